"""The written phantom dataset: layout, names, orientation on disk, header spacing, burdens, CLI."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.io.dataset import discover_dataset
from nfbench.io.volume import load_volume
from nfbench.phantom import SIZES, make_case, write_phantom_dataset
from nfbench.phantom.case import BURDEN_RANGES
from nfbench.phantom.dataset import plan_dataset

NAME = re.compile(r"^(?P<n>\d+)_(?P<year>\d{4})_P_(?P<pid>\d+)_T2$")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "ds"
    return write_phantom_dataset(root, cases=4, test_cases=1, size="tiny", burden="low", seed=3, progress=False)


def test_layout_pairs_by_name_without_problems(written):
    dataset = discover_dataset(written)
    assert dataset.problems == []
    assert {k: len(v) for k, v in dataset.subsets.items()} == {"imagesTr": 4, "imagesTs_1": 1, "imagesTs_2": 1}
    for case in dataset.cases:
        assert case.image.name == f"{case.name}.nii.gz" and case.label.name == f"{case.name}.nii.gz"
    assert (written / "dataset.json").is_file()


def test_names_follow_the_original_style_with_follow_up_scans(written):
    dataset = discover_dataset(written)
    pid = {c.name: NAME.match(c.name)["pid"] for c in dataset.cases}
    assert all(NAME.match(c.name) for c in dataset.cases)
    train = [pid[c.name] for c in dataset.subset("Tr")]
    assert len(set(train)) < len(train)  # some patient has two scans: grouped folds matter
    tests = {pid[c.name] for s in ("Ts_1", "Ts_2") for c in dataset.subset(s)}
    assert not tests & set(train)  # test patients are unseen in training
    numbers = sorted(int(NAME.match(c.name)["n"]) for c in dataset.cases)
    assert numbers == list(range(1, len(numbers) + 1))


def test_stored_rsa_and_loaded_back_to_ras_with_the_asked_spacing(written):
    shape, spacing = SIZES["tiny"]
    case = discover_dataset(written).subset("Tr")[0]
    for path in (case.image, case.label):
        stored = nib.load(path)
        assert nib.aff2axcodes(stored.affine) == ("R", "S", "A")
        assert stored.shape == (shape[0], shape[2], shape[1])
        volume = load_volume(path)
        assert volume.shape == shape
        np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-6)
        assert volume.original_orientation == "RSA"
    assert load_volume(case.image).data.dtype == np.int16
    assert load_volume(case.label).data.dtype == np.uint16


def test_written_case_equals_the_in_memory_case(written):
    # The dataset spawns one generator per case from the seed; rebuild the first training case.
    plan_seq, first_seq = np.random.SeedSequence(3).spawn(1 + 4 + 2)[:2]
    entries = plan_dataset(cases=4, test_cases=1, burden="low", rng=np.random.default_rng(plan_seq))
    expected = make_case(size="tiny", burden="low", rng=np.random.default_rng(first_seq))
    on_disk = next(c for c in discover_dataset(written).subset("Tr") if c.name == entries[0].name)
    np.testing.assert_array_equal(load_volume(on_disk.label).data, expected.label)
    np.testing.assert_array_equal(load_volume(on_disk.image).data, np.rint(expected.image).astype(np.int16))


@pytest.mark.parametrize("subset, burden", [("Tr", "low"), ("Ts_1", "high"), ("Ts_2", "low")])
def test_each_subset_has_its_burden(written, subset, burden):
    lo, hi = BURDEN_RANGES[burden]
    meta = json.loads((written / "dataset.json").read_text())
    assert meta["subsets"][f"images{subset}"]["burden"] == burden
    for case in discover_dataset(written).subset(subset):
        label = load_volume(case.label).data
        ids = np.unique(label[label > 0])
        assert lo <= len(ids) <= hi
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))


def test_dataset_json_records_the_recipe(written):
    meta = json.loads((written / "dataset.json").read_text())
    assert meta["seed"] == 3 and meta["size"] == "tiny" and meta["burden"] == "low"
    assert meta["spacing_ras_mm"] == list(SIZES["tiny"][1])
    assert meta["stored_orientation"] == "RSA"
    assert {"phantom_version", "nfbench_version", "numpy_version"} <= set(meta)


def test_refuses_a_folder_holding_an_earlier_phantom(written):
    with pytest.raises(FileExistsError, match="imagesTr: already holds files"):
        write_phantom_dataset(written, cases=1, test_cases=0, size="tiny", progress=False)


def test_a_dataset_without_test_cases_has_no_empty_test_folders_and_passes_the_check(tmp_path):
    from nfbench.io.check import check_dataset

    out = write_phantom_dataset(tmp_path / "tr", cases=1, test_cases=0, size="tiny", progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["imagesTr", "labelsTr"]
    assert check_dataset(out).ok
    with pytest.raises(ValueError, match="at least one case"):
        write_phantom_dataset(tmp_path / "none", cases=0, test_cases=0, size="tiny", progress=False)


def test_cli_writes_the_layout_quietly(tmp_path):
    out = tmp_path / "ds"
    args = ["data", "phantom", str(out), "--size", "tiny", "--cases", "2", "--test-cases", "1",
            "--burden", "high", "--seed", "5", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    dataset = discover_dataset(out)
    assert {k: len(v) for k, v in dataset.subsets.items()} == {"imagesTr": 2, "imagesTs_1": 1, "imagesTs_2": 1}
    for subset, burden in (("Tr", "high"), ("Ts_1", "high"), ("Ts_2", "low")):
        lo, hi = BURDEN_RANGES[burden]
        n = int(load_volume(dataset.subset(subset)[0].label).data.max())
        assert lo <= n <= hi
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already holds files" in again.output
    replaced = CliRunner().invoke(app, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_cli_shows_progress_unless_quiet(tmp_path):
    result = CliRunner().invoke(app, ["data", "phantom", str(tmp_path / "ds"), "--size", "tiny",
                                      "--cases", "1", "--test-cases", "0"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 training cases" in result.stdout
    assert "1/1" in result.stderr  # the progress bar goes to stderr

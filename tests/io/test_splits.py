"""k-fold splits: every case validated once, patients never split, deterministic, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfbench.io.splits import (
    PATIENT_PATTERN, FoldsExistError, GroupPatternError, SplitError, case_groups, kfold_split, split_dataset,
)

# The original naming, {n}_{year}_P_{pid}_T2, with longitudinal follow-ups of some patients.
NAMES = [f"{n}_{2010 + n % 9}_P_{pid}_T2" for n, pid in enumerate(
    [72, 72, 72, 72, 72, 26, 26, 98, 98, 98, 163, 163, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])]


def _covers_once(folds, names):
    vals = [n for f in folds for n in f.val]
    return sorted(vals) == sorted(names)


def _pid(name):
    return name.split("_P_")[1].split("_")[0]


def _leaks(folds):
    """Patients with scans in train and val of one fold."""
    return {p for f in folds for p in {_pid(n) for n in f.train} & {_pid(n) for n in f.val}}


@pytest.mark.parametrize("k", [2, 3, 5])
def test_every_case_in_exactly_one_validation_fold(k):
    names = [f"case_{i:03d}" for i in range(17)]
    folds = kfold_split(names, folds=k, seed=1, group_pattern=None)
    assert [f.index for f in folds] == list(range(1, k + 1))
    assert _covers_once(folds, names)
    for f in folds:
        assert set(f.train).isdisjoint(f.val)
        assert sorted(f.train + f.val) == sorted(names)
        assert list(f.train) == sorted(f.train) and list(f.val) == sorted(f.val)
    sizes = [len(f.val) for f in folds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_default_folds_never_put_a_patient_in_train_and_val(seed):
    folds = kfold_split(NAMES, folds=5, seed=seed)
    assert _covers_once(folds, NAMES)
    assert _leaks(folds) == set()
    # Patient 72's five scans all sit in one validation fold.
    assert sum(any(_pid(n) == "72" for n in f.val) for f in folds) == 1


def test_default_dataset_split_keeps_patients_together(dataset):
    # Several scans per patient, named as in the original; no grouping option given.
    names = tuple(f"{n}_{2010 + n}_P_{pid}_T2" for n, pid in enumerate([3, 3, 3, 8, 8, 8, 11, 11, 14, 20, 21, 22]))
    folds = split_dataset(dataset(names), folds=5, seed=42)
    assert _covers_once(folds, list(names)) and _leaks(folds) == set()


def test_per_scan_split_on_request_ignores_patients():
    # Twelve scans of three patients into five folds: per scan it works (and must leak), grouped
    # it cannot be filled.
    names = [f"{n}_2015_P_{n % 3}_T2" for n in range(12)]
    folds = kfold_split(names, folds=5, seed=42, group_pattern=None)
    assert _covers_once(folds, names) and [len(f.val) for f in folds] == [3, 3, 2, 2, 2]
    assert _leaks(folds) == {"0", "1", "2"}
    with pytest.raises(SplitError, match="3 patient groups cannot fill 5 folds"):
        kfold_split(names, folds=5, seed=42)


def test_other_naming_needs_a_pattern_or_an_explicit_per_scan_split():
    names = ["case_001", "case_002", "3_2019_P_4_T2", "case_003"]
    with pytest.raises(GroupPatternError) as err:
        kfold_split(names, folds=2)
    message = str(err.value)
    assert f"group pattern {PATIENT_PATTERN!r}" in message and "{n}_{year}_P_{pid}_T2" in message
    assert "case name(s): case_001, case_002, case_003;" in message
    assert message.endswith("pass a grouping pattern that finds the patient in every name, or split per scan explicitly")
    assert "--" not in message  # the library names no CLI flag
    assert err.value.names == ["case_001", "case_002", "case_003"]
    for pattern in (r"(\d+)(_T2)?$", None):  # a pattern for this naming, or per scan on purpose
        assert _covers_once(kfold_split(names, folds=2, group_pattern=pattern), names)


def test_many_unmatched_names_are_counted():
    names = [f"scan{i}" for i in range(8)]
    with pytest.raises(GroupPatternError, match=r"scan0, scan1, scan2, scan3, scan4 and 3 more; pass"):
        kfold_split(names, folds=2)


def test_deterministic_given_seed_and_varies_with_seed():
    names = [f"{i}_2020_P_{i // 2}_T2" for i in range(20)]
    a = kfold_split(names, folds=4, seed=7)
    assert kfold_split(list(reversed(names)), folds=4, seed=7) == a  # input order does not matter
    assert any(kfold_split(names, folds=4, seed=s) != a for s in range(8, 12))


def test_group_is_whole_match_without_capturing_group():
    assert case_groups(["a_P_1_x", "b_P_22_y"], r"P_\d+") == {"a_P_1_x": "P_1", "b_P_22_y": "P_22"}
    assert case_groups(["a_P_1_x"], r"P_(\d+)") == {"a_P_1_x": "1"}
    assert case_groups(["a", "b"], None) == {"a": "a", "b": "b"}


def test_errors_are_clear():
    with pytest.raises(SplitError, match=r"does not match case name\(s\): case_9"):
        kfold_split(["1_P_1", "2_P_2", "case_9"], folds=2, group_pattern=r"P_(\d+)")
    with pytest.raises(SplitError, match="not a valid regular expression"):
        kfold_split(["a", "b"], folds=2, group_pattern="P_(")
    with pytest.raises(SplitError, match="3 cases cannot fill 5 folds"):
        kfold_split(["a", "b", "c"], folds=5, group_pattern=None)
    with pytest.raises(SplitError, match="2 patient groups cannot fill 3 folds"):
        kfold_split(["1_P_1", "2_P_1", "3_P_2", "4_P_2"], folds=3, group_pattern=r"P_(\d+)")
    with pytest.raises(SplitError, match="at least 2 folds"):
        kfold_split(["a", "b"], folds=1, group_pattern=None)


def test_split_dataset_writes_fold_files(dataset):
    root = dataset(tuple(f"{i}_2016_P_{i}_T2" for i in range(7)))
    folds = split_dataset(root, folds=3, seed=42)
    for f in folds:
        train = (root / "splits" / f"fold_{f.index}" / "train_set.txt").read_text()
        val = (root / "splits" / f"fold_{f.index}" / "val_set.txt").read_text()
        assert train.endswith("\n") and val.endswith("\n")
        assert train.splitlines() == list(f.train) and val.splitlines() == list(f.val)
    assert not (root / "splits" / "fold_0").exists() and not (root / "splits" / "fold_4").exists()
    meta = json.loads((root / "splits" / "splits.json").read_text())
    assert meta["seed"] == 42 and meta["numpy"] == np.__version__ and meta["group_pattern"] == PATIENT_PATTERN
    assert meta["groups"] == {f"{i}_2016_P_{i}_T2": str(i) for i in range(7)}
    assert [f["val"] for f in meta["folds"]] == [list(f.val) for f in folds]


def test_split_dataset_refuses_to_overwrite_and_cleans_stale_folds(dataset):
    root = dataset(tuple(f"case_{i}" for i in range(6)))
    split_dataset(root, folds=5, group_pattern=None)
    with pytest.raises(FoldsExistError, match="already holds folds; they are replaced only when overwriting is asked for"):
        split_dataset(root, folds=3, group_pattern=None)
    split_dataset(root, folds=3, group_pattern=None, overwrite=True)
    assert json.loads((root / "splits" / "splits.json").read_text())["groups"] is None
    assert sorted(p.name for p in (root / "splits").iterdir()) == ["fold_1", "fold_2", "fold_3", "splits.json"]


def test_split_dataset_without_training_images(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(SplitError, match="no training images"):
        split_dataset(tmp_path)


def test_split_dataset_refuses_images_without_label(dataset):
    root = dataset(tuple(f"case_{i}" for i in range(6)))
    (root / "labelsTr" / "case_3.nii.gz").unlink()
    with pytest.raises(SplitError, match="1 image.s. without label: case_3_0000.nii.gz"):
        split_dataset(root, folds=3, group_pattern=None)
    assert not (root / "splits").exists()

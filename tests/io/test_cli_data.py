"""`nfbench data check|split|slice` through the real Typer app, in-process."""

from __future__ import annotations

import io
import json

import numpy as np
from rich.console import Console
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.cli import data as cli_data

runner = CliRunner()


def test_check_clean_dataset_exits_0_with_table(dataset):
    root = dataset(("case_001", "case_002"))
    result = runner.invoke(app, ["data", "check", str(root), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "case_001" in result.stdout and "2 cases, no problems" in result.stdout


def test_piped_check_table_keeps_long_case_names_whole(dataset):
    name = "3_2022_P_719_T2_with_a_long_suffix"
    result = runner.invoke(app, ["data", "check", str(dataset((name,))), "--quiet"])
    assert result.exit_code == 0, result.output
    assert name in result.stdout  # an 80-column table used to cut it to "3_2022…"


def test_check_lists_every_problem_one_line_each_and_exits_1(dataset, nifti):
    root = dataset(("case_001", "case_003"))
    nifti(root / "labelsTr" / "case_003.nii.gz", np.zeros((12, 5, 20), np.uint8))
    nifti(root / "imagesTr" / "lonely_0000.nii.gz", np.ones((12, 6, 20), np.float32))
    result = runner.invoke(app, ["data", "check", str(root), "--quiet"])
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem ")]
    assert problems == [
        "problem imagesTr/lonely_0000.nii.gz: image without label (expected labelsTr/lonely.nii.gz)",
        "problem labelsTr/case_003.nii.gz: shape (12, 5, 20) differs from imagesTr/case_003_0000.nii.gz (12, 6, 20)",
    ]
    assert "3 cases, 2 problem(s)" in result.stdout


def test_check_json_is_machine_readable(dataset, nifti):
    root = dataset(("a",))
    nifti(root / "labelsTr" / "b.nii.gz", np.zeros((2, 2, 2), np.uint8))
    result = runner.invoke(app, ["data", "check", str(root), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [c["case"] for c in data["cases"]] == ["a"] and data["cases"][0]["n_lesions"] == 2
    assert data["problems"][0]["file"] == "labelsTr/b.nii.gz"
    assert data["problems"][0]["message"].startswith("label without image")


def test_check_missing_folder(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope"), "--quiet"])
    assert result.exit_code == 1
    assert "dataset folder does not exist" in result.stdout


def test_check_shows_progress_on_stderr_unless_quiet(dataset, monkeypatch):
    # The progress bar draws only on a terminal: give the command a terminal-like stderr console.
    root = dataset(("a", "b"))
    for quiet, expect_bar in ((False, True), (True, False)):
        terminal = io.StringIO()
        monkeypatch.setattr(cli_data, "stderr", Console(file=terminal, force_terminal=True, color_system=None, width=80))
        result = runner.invoke(app, ["data", "check", str(root), *(["--quiet"] if quiet else [])])
        assert result.exit_code == 0, result.output
        shown = terminal.getvalue()
        assert ("checking b" in shown and "2/2" in shown) is expect_bar
        assert expect_bar or shown == ""
        assert "checking" not in result.stdout  # the bar never mixes with the table on stdout


def _val_sets(root, k):
    return [(root / "splits" / f"fold_{i}" / "val_set.txt").read_text().splitlines() for i in range(1, k + 1)]


def test_split_groups_by_patient_by_default_and_reports_sizes(dataset):
    names = [f"{n}_2018_P_{n // 2}_T2" for n in range(10)]  # two scans per patient
    root = dataset(tuple(names))
    result = runner.invoke(app, ["data", "split", str(root), "--folds", "5", "--seed", "42"])
    assert result.exit_code == 0, result.output
    assert "grouped by P_(\\d+)" in result.stdout and "fold_5 8/2" in result.stdout
    vals = _val_sets(root, 5)
    assert sorted(n for v in vals for n in v) == sorted(names)
    assert all(len({n.split("_P_")[1] for n in v}) == 1 for v in vals)  # each fold holds one patient's two scans


def test_split_other_naming_fails_with_both_ways_out(dataset):
    root = dataset(("a", "b", "c"))
    result = runner.invoke(app, ["data", "split", str(root), "--folds", "3"])
    assert result.exit_code == 1
    message = result.stderr.replace("\n", "")
    assert "does not match case name(s): a, b, c; pass --group-regex" in message
    assert "or --no-group to split per scan on purpose" in message
    assert "Traceback" not in result.output and not (root / "splits").exists()


def test_split_no_group_splits_per_scan(dataset):
    root = dataset(("a", "b", "c"))
    result = runner.invoke(app, ["data", "split", str(root), "--folds", "3", "--no-group"])
    assert result.exit_code == 0, result.output
    assert "per scan" in result.stdout
    assert sorted(map(tuple, _val_sets(root, 3))) == [("a",), ("b",), ("c",)]
    result = runner.invoke(app, ["data", "split", str(root), "--no-group", "--group-regex", "x"])
    assert result.exit_code == 1 and "exclude each other" in result.stderr


def test_split_errors_are_one_line_without_traceback(dataset):
    root = dataset(("a", "b", "c"))
    result = runner.invoke(app, ["data", "split", str(root), "--group-regex", r"P_(\d+)"])
    assert result.exit_code == 1
    assert "does not match case name(s): a, b, c" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["data", "split", str(root), "--folds", "4", "--no-group"])
    assert result.exit_code == 1 and "3 cases cannot fill 4 folds" in result.stderr
    assert runner.invoke(app, ["data", "split", str(root), "--folds", "3", "--no-group"]).exit_code == 0
    result = runner.invoke(app, ["data", "split", str(root), "--folds", "3", "--no-group"])
    assert result.exit_code == 1 and "already holds folds; pass --overwrite" in result.stderr.replace("\n", "")


def test_slice_writes_frames_and_refuses_broken_datasets(dataset, tmp_path, nifti):
    root = dataset(("a",))
    out = tmp_path / "slices"
    result = runner.invoke(app, ["data", "slice", str(root), str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    # Stored (12, 6, 20) with unit spacing: no thick axis, so coronal (axis 1, 6 frames).
    assert len(list((out / "imagesTr" / "a").glob("*.png"))) == 6
    assert (out / "slices.json").is_file()
    nifti(root / "labelsTr" / "ghost.nii.gz", np.zeros((2, 2, 2), np.uint8))
    result = runner.invoke(app, ["data", "slice", str(root), str(out), "--quiet"])
    assert result.exit_code == 1
    # fail() lets rich wrap long lines at the terminal width; join them back before matching.
    assert "ghost.nii.gz: label without image" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.output

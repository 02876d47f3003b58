"""k-fold splits: every case validated once, patients never split, deterministic, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfbench.io.splits import SplitError, case_groups, kfold_split, split_dataset

# The original naming, {n}_{year}_P_{pid}_T2, with longitudinal follow-ups of some patients.
NAMES = [f"{n}_{2010 + n % 9}_P_{pid}_T2" for n, pid in enumerate(
    [72, 72, 72, 72, 72, 26, 26, 98, 98, 98, 163, 163, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])]


def _covers_once(folds, names):
    vals = [n for f in folds for n in f.val]
    return sorted(vals) == sorted(names)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_every_case_in_exactly_one_validation_fold(k):
    names = [f"case_{i:03d}" for i in range(17)]
    folds = kfold_split(names, folds=k, seed=1)
    assert [f.index for f in folds] == list(range(1, k + 1))
    assert _covers_once(folds, names)
    for f in folds:
        assert set(f.train).isdisjoint(f.val)
        assert sorted(f.train + f.val) == sorted(names)
        assert list(f.train) == sorted(f.train) and list(f.val) == sorted(f.val)
    sizes = [len(f.val) for f in folds]
    assert max(sizes) - min(sizes) <= 1


def test_grouped_folds_never_split_a_patient():
    folds = kfold_split(NAMES, folds=5, seed=42, group_pattern=r"P_(\d+)")
    assert _covers_once(folds, NAMES)
    pid = lambda name: name.split("_P_")[1].split("_")[0]  # noqa: E731
    for f in folds:
        assert {pid(n) for n in f.train}.isdisjoint({pid(n) for n in f.val})
    # Patient 72's five scans all sit in one validation fold.
    assert sum(any(pid(n) == "72" for n in f.val) for f in folds) == 1


def test_without_groups_patients_can_leak_which_grouping_prevents():
    # The original per-scan split put a patient in train and val. With five scans of patient 72
    # spread over five folds a per-scan split leaks for almost any seed; seed 42 does on this
    # NumPy's stream (exact shuffles depend on NumPy's random stream). Grouping must not leak.
    pid = lambda name: name.split("_P_")[1].split("_")[0]  # noqa: E731
    leaks = lambda folds: any({pid(n) for n in f.train} & {pid(n) for n in f.val} for f in folds)  # noqa: E731
    assert leaks(kfold_split(NAMES, folds=5, seed=42))
    assert not leaks(kfold_split(NAMES, folds=5, seed=42, group_pattern=r"P_(\d+)"))


def test_deterministic_given_seed_and_varies_with_seed():
    names = [f"c{i}" for i in range(20)]
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
        kfold_split(["a", "b", "c"], folds=5)
    with pytest.raises(SplitError, match="2 patient groups cannot fill 3 folds"):
        kfold_split(["1_P_1", "2_P_1", "3_P_2", "4_P_2"], folds=3, group_pattern=r"P_(\d+)")
    with pytest.raises(SplitError, match="at least 2 folds"):
        kfold_split(["a", "b"], folds=1)


def test_split_dataset_writes_fold_files(dataset):
    root = dataset(tuple(f"case_{i}" for i in range(7)))
    folds = split_dataset(root, folds=3, seed=42)
    for f in folds:
        train = (root / "splits" / f"fold_{f.index}" / "train_set.txt").read_text()
        val = (root / "splits" / f"fold_{f.index}" / "val_set.txt").read_text()
        assert train.endswith("\n") and val.endswith("\n")
        assert train.splitlines() == list(f.train) and val.splitlines() == list(f.val)
    assert not (root / "splits" / "fold_0").exists() and not (root / "splits" / "fold_4").exists()
    meta = json.loads((root / "splits" / "splits.json").read_text())
    assert meta["seed"] == 42 and meta["numpy"] == np.__version__
    assert [f["val"] for f in meta["folds"]] == [list(f.val) for f in folds]


def test_split_dataset_refuses_to_overwrite_and_cleans_stale_folds(dataset):
    root = dataset(tuple(f"case_{i}" for i in range(6)))
    split_dataset(root, folds=5)
    with pytest.raises(SplitError, match="already holds folds; pass --overwrite"):
        split_dataset(root, folds=3)
    split_dataset(root, folds=3, overwrite=True)
    assert sorted(p.name for p in (root / "splits").iterdir()) == ["fold_1", "fold_2", "fold_3", "splits.json"]


def test_split_dataset_without_training_images(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(SplitError, match="no training images"):
        split_dataset(tmp_path)

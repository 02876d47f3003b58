"""Dataset discovery: folders, suffixes, pairing by case name, files that are not NIfTI."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.io.dataset import case_name, discover_dataset


def _touch(path, nifti):
    return nifti(path, np.zeros((2, 2, 2), dtype=np.uint8))


@pytest.mark.parametrize(
    ("file", "image", "expected"),
    [
        ("case_001_0000.nii.gz", True, "case_001"),
        ("case_001_0000.nii.gz", False, "case_001_0000"),  # labels have no channel suffix
        ("case_001.nii", True, "case_001"),
        ("10_2018_P_72_T2.nii.gz", True, "10_2018_P_72_T2"),
        ("case_0000_0000.nii.gz", True, "case_0000"),  # only the last _0000 is the channel
        ("README.md", True, None),
        (".DS_Store", True, None),
        ("case.nii.gz.bak", True, None),
    ],
)
def test_case_name(file, image, expected):
    assert case_name(file, image=image) == expected


def test_pairs_by_case_name_not_by_position(tmp_path, nifti):
    root = tmp_path / "d"
    # Sorted image names b, c versus sorted label names a, b, c: positions disagree.
    for name in ("b", "c"):
        _touch(root / "imagesTr" / f"{name}_0000.nii.gz", nifti)
    for name in ("a", "b", "c"):
        _touch(root / "labelsTr" / f"{name}.nii.gz", nifti)
    ds = discover_dataset(root)
    pairs = {c.name: (c.image.name, c.label.name if c.label else None) for c in ds.subset("Tr")}
    assert pairs == {"b": ("b_0000.nii.gz", "b.nii.gz"), "c": ("c_0000.nii.gz", "c.nii.gz")}
    assert [p.path.name for p in ds.problems] == ["a.nii.gz"]
    assert "label without image" in ds.problems[0].message


def test_test_sets_instance_label_folders_and_optional_channel_suffix(tmp_path, nifti):
    root = tmp_path / "d"
    _touch(root / "imagesTr" / "t1_0000.nii.gz", nifti)
    _touch(root / "labelsTr" / "t1.nii.gz", nifti)
    _touch(root / "imagesTs_1" / "x1.nii.gz", nifti)  # no _0000
    _touch(root / "labelsTs_1_instance" / "x1.nii.gz", nifti)  # the original's label-folder suffix
    _touch(root / "imagesTs_2" / "y1_0000.nii", nifti)
    _touch(root / "labelsTs_2" / "y1.nii", nifti)
    ds = discover_dataset(root)
    assert ds.problems == []
    assert sorted(ds.subsets) == ["imagesTr", "imagesTs_1", "imagesTs_2"]
    (x1,) = ds.subset("Ts_1")
    assert (x1.name, x1.label.parent.name, x1.subset) == ("x1", "labelsTs_1_instance", "imagesTs_1")
    assert ds.subset("imagesTs_2")[0].label.name == "y1.nii"
    with pytest.raises(KeyError, match="no subset 'Ts_9'"):
        ds.subset("Ts_9")


def test_non_nifti_files_and_folders_are_skipped(tmp_path, nifti):
    root = tmp_path / "d"
    _touch(root / "imagesTr" / "a_0000.nii.gz", nifti)
    _touch(root / "labelsTr" / "a.nii.gz", nifti)
    for folder in ("imagesTr", "labelsTr"):
        (root / folder / "README").write_text("notes")
        (root / folder / ".DS_Store").write_bytes(b"\0\1")
        (root / folder / "old").mkdir()
    (root / "README.md").write_text("dataset")
    (root / "splits").mkdir()
    ds = discover_dataset(root)
    assert ds.problems == []
    assert [c.name for c in ds.cases] == ["a"]


def test_image_without_label_and_missing_label_folder(tmp_path, nifti):
    root = tmp_path / "d"
    _touch(root / "imagesTr" / "a_0000.nii.gz", nifti)
    _touch(root / "imagesTr" / "b_0000.nii.gz", nifti)
    _touch(root / "labelsTr" / "a.nii.gz", nifti)
    _touch(root / "imagesTs_1" / "z_0000.nii.gz", nifti)
    ds = discover_dataset(root)
    messages = sorted(str(p) for p in ds.problems)
    assert len(messages) == 2
    assert any("b_0000.nii.gz: image without label" in m for m in messages)
    assert any("labelsTs_1: label folder for imagesTs_1 is missing" in m for m in messages)
    # The unlabelled case is still listed (its label is None), so checks can report on it.
    assert {c.name: c.label is None for c in ds.cases} == {"a": False, "b": True, "z": True}


def test_same_case_twice_in_one_folder(tmp_path, nifti):
    root = tmp_path / "d"
    _touch(root / "imagesTr" / "a_0000.nii.gz", nifti)
    _touch(root / "imagesTr" / "a.nii.gz", nifti)
    _touch(root / "labelsTr" / "a.nii.gz", nifti)
    ds = discover_dataset(root)
    assert len(ds.subset("Tr")) == 1
    assert len(ds.problems) == 1 and "present twice" in ds.problems[0].message


def test_missing_or_empty_dataset_folders(tmp_path):
    assert "does not exist" in discover_dataset(tmp_path / "nope").problems[0].message
    (tmp_path / "empty").mkdir()
    assert "no imagesTr" in discover_dataset(tmp_path / "empty").problems[0].message
    (tmp_path / "e2" / "imagesTr").mkdir(parents=True)
    (tmp_path / "e2" / "labelsTr").mkdir()
    problems = discover_dataset(tmp_path / "e2").problems
    assert [p.message for p in problems] == ["folder holds no NIfTI image"]


def test_a_case_named_like_a_channel_suffix_pairs_with_its_label(tmp_path, nifti):
    root = tmp_path / "d"
    for name in ("sub_0000", "sub_0001"):
        _touch(root / "imagesTr" / f"{name}.nii.gz", nifti)
        _touch(root / "labelsTr" / f"{name}.nii.gz", nifti)
    _touch(root / "imagesTr" / "other_0000.nii.gz", nifti)  # nnU-Net style: the suffix is the channel
    _touch(root / "labelsTr" / "other.nii.gz", nifti)
    ds = discover_dataset(root)
    assert ds.problems == []
    assert {c.name: c.label.name for c in ds.subset("Tr")} == {
        "sub_0000": "sub_0000.nii.gz", "sub_0001": "sub_0001.nii.gz", "other": "other.nii.gz"}


def test_label_folders_without_images_and_misspelt_subsets_are_reported(tmp_path, nifti):
    root = tmp_path / "d"
    for folder in ("imagesTs_1", "labelsTs_1", "labelsTs_2", "imagesTS_3", "labelsTS_3", "notes"):
        _touch(root / folder / "a.nii.gz", nifti)
    ds = discover_dataset(root)
    assert list(ds.subsets) == ["imagesTs_1"]
    assert sorted((p.path.name, p.message.split(":")[0]) for p in ds.problems) == [
        ("imagesTS_3", "folder name not understood"),
        ("labelsTS_3", "folder name not understood"),
        ("labelsTs_2", "label folder without its image folder imagesTs_2"),
    ]


def test_any_images_or_labels_folder_that_is_no_subset_is_reported(tmp_path, nifti):
    root = tmp_path / "d"
    for folder in ("imagesTr", "labelsTr", "imagesTest", "labelsTest", "imagestr2", "labelsVal", "Images_old",
                   "labelsTr_instance_v2", "splits"):
        _touch(root / folder / "a.nii.gz", nifti)
    ds = discover_dataset(root)
    assert list(ds.subsets) == ["imagesTr"]
    reported = {p.path.name: p.message for p in ds.problems}
    assert sorted(reported) == ["Images_old", "imagesTest", "imagestr2", "labelsTest", "labelsTr_instance_v2",
                                "labelsVal"]
    for message in reported.values():
        assert message.startswith("folder name not understood: subsets are imagesTr, imagesTs and imagesTs_<name>")
        assert "labelsTr, labelsTs and labelsTs_<name>" in message


def test_misnamed_folders_are_reported_when_no_subset_is_found(tmp_path, nifti):
    root = tmp_path / "d"
    for folder in ("imagesTest", "labelsTest"):
        _touch(root / folder / "a.nii.gz", nifti)
    ds = discover_dataset(root)
    assert [(p.path.name, p.message.split(":")[0]) for p in ds.problems] == [
        ("d", "no imagesTr or imagesTs* folder found"),
        ("imagesTest", "folder name not understood"),
        ("labelsTest", "folder name not understood"),
    ]

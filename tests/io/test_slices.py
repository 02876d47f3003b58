"""2D slices: orientation worked out by hand from a non-RAS file, 8-bit images, ranked masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nfbench.io.dataset import discover_dataset
from nfbench.io.slices import (
    SliceError,
    display_plane,
    intensity_window,
    rank_instances,
    slice_axis,
    slice_case,
    slice_dataset,
    to_uint8,
)

# Stored axes point to patient Left (0.8 mm), Superior (1.1 mm), Posterior (7.8 mm, thick):
# every canonical axis is either swapped or flipped relative to the file.
LSP = np.array([[-0.8, 0, 0, 10.0], [0, 0, -7.8, 50.0], [0, 1.1, 0, -200.0], [0, 0, 0, 1]])
STORED_SHAPE = (10, 16, 4)  # (L, S, P)


def _read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _lsp_case(root, nifti, *, name="p1", label=None, subset="Tr", label_suffix=""):
    rng = np.random.default_rng(3)
    image = rng.uniform(1.0, 500.0, size=STORED_SHAPE).astype(np.float32)
    image[0, 0, :] = 0.0  # background voxels stay exactly 0
    if label is None:
        label = np.zeros(STORED_SHAPE, np.uint8)
        label[2, 12, 1] = 1  # the marker lesion: one voxel
    nifti(root / f"images{subset}" / f"{name}_0000.nii.gz", image, LSP)
    nifti(root / f"labels{subset}{label_suffix}" / f"{name}.nii.gz", label, LSP)
    return image


def test_known_lesion_lands_at_hand_computed_pixel_and_frame(tmp_path, nifti):
    root, out = tmp_path / "d", tmp_path / "out"
    _lsp_case(root, nifti)
    (case,) = discover_dataset(root).cases
    result = slice_case(case, out)
    assert (result.slice_axis, result.n_frames) == (1, 4)
    # Stored index (l=2, s=12, p=1): 2 voxels from the patient's right edge (l=0 is the rightmost
    # since l grows toward Left) → column 2; the top row is s=15, so s=12 → row 3; p grows toward
    # Posterior and frame 0 is the most posterior slice (p=3), so p=1 → frame 2.
    frames = sorted((out / "labelsTr_instance" / "p1").iterdir())
    assert [f.name for f in frames] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    for n, frame in enumerate(frames):
        mask = _read(frame)
        assert mask.shape == (16, 10) and mask.dtype == np.uint8
        expected = np.zeros((16, 10), np.uint8)
        if n == 2:
            expected[3, 2] = 1
        np.testing.assert_array_equal(mask, expected)


def test_image_frames_match_hand_built_slices(tmp_path, nifti):
    # Stored (L, S, P) levels chosen so the 8-bit values are exact: the window is (100, 202)
    # (the most inferior and most superior rows hold over 0.5 % of the voxels each), so a value v
    # becomes (v - 100) * 2.5.
    stored = np.full(STORED_SHAPE, 150.0, np.float32)  # -> 125
    stored[0, 1:15, :] = 176.0  # l = 0, the patient's rightmost column -> 190
    stored[:, 15, :] = 202.0  # s = 15, the most superior row -> 255
    stored[:, 0, :] = 100.0  # s = 0, the most inferior row -> 0
    stored[2, 12, 1] = 124.0  # a marker at p = 1 -> 60
    stored[9, 0, 3] = 0.0  # background stays exactly 0
    root, out = tmp_path / "d", tmp_path / "out"
    nifti(root / "imagesTr" / "p1_0000.nii.gz", stored, LSP)
    nifti(root / "labelsTr" / "p1.nii.gz", np.zeros(STORED_SHAPE, np.uint8), LSP)
    (case,) = discover_dataset(root).cases
    result = slice_case(case, out)
    assert (result.intensity_lo, result.intensity_hi) == (100.0, 202.0)
    for n in range(4):  # frame 0 is the most posterior slice, p = 3
        expected = np.full((16, 10), 125, np.uint8)
        expected[1:15, 0] = 190  # patient's right on the image's left
        expected[0, :] = 255  # head up
        expected[15, :] = 0
        if n == 2:  # p = 1
            expected[3, 2] = 60  # row 15 - s, column l
        np.testing.assert_array_equal(_read(out / "imagesTr" / "p1" / f"{n:05d}.png"), expected)


def test_slice_case_refuses_unusable_labels_with_the_check_messages(tmp_path, nifti):
    root, out = tmp_path / "d", tmp_path / "out"
    label = np.zeros(STORED_SHAPE, np.float32)
    label[1, 1, 1] = 0.5
    _lsp_case(root, nifti, label=label)
    (case,) = discover_dataset(root).cases
    with pytest.raises(SliceError, match=r"p1\.nii\.gz: label holds non-integer values \(1 voxels, e\.g\. 0\.5\)"):
        slice_case(case, out)
    nifti(root / "labelsTr" / "p1.nii.gz", np.zeros((10, 16, 5), np.uint8), LSP)
    with pytest.raises(SliceError, match=r"p1\.nii\.gz: shape \(10, 5, 16\) differs from p1_0000\.nii\.gz \(10, 4, 16\)"):
        slice_case(case, out)


def test_display_plane_convention_on_canonical_array():
    vol = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (R, A, S) = (2, 3, 4)
    plane = display_plane(vol, 1, 0)
    assert plane.shape == (4, 2)
    assert plane[0, 0] == vol[1, 0, 3]  # top-left: most superior, patient's rightmost
    assert plane[3, 1] == vol[0, 0, 0]  # bottom-right: most inferior, patient's leftmost


def test_slice_axis_is_the_largest_spacing_preferring_coronal():
    assert slice_axis((0.625, 7.8, 0.625)) == 1
    assert slice_axis((1.0, 1.0, 5.0)) == 2
    assert slice_axis((1.0, 1.0, 1.0)) == 1
    assert slice_axis((3.0, 1.0, 3.0)) == 0


def test_intensity_window_ignores_zero_voxels():
    values = np.arange(1, 1002, dtype=np.float32)  # 1..1001: 0.5 % → 6, 99.5 % → 996
    image = np.concatenate([np.zeros(5000, np.float32), values])
    assert intensity_window(image) == pytest.approx((6.0, 996.0))
    assert intensity_window(np.zeros(10)) == (0.0, 0.0)


def test_to_uint8_maps_window_and_keeps_zeros():
    image = np.array([0.0, 5.0, 10.0, 15.0, 20.0, 25.0, -3.0])
    np.testing.assert_array_equal(to_uint8(image, (10.0, 20.0)), [0, 0, 0, 128, 255, 255, 0])
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 7.0]), (7.0, 7.0)), [0, 255])


def test_rank_instances_orders_by_size():
    label = np.zeros((6, 6, 6), np.uint8)
    label[0, 0, 0] = 1  # 1 voxel, id 1
    label[3:5, 3:5, 3:5] = 2  # 8 voxels, id 2
    ranked, n = rank_instances(label, affine=np.eye(4))
    assert n == 2 and ranked.dtype == np.uint8
    assert ranked[0, 0, 0] == 2 and (ranked[3:5, 3:5, 3:5] == 1).all()
    # A binary label is split into 26-connected components first.
    binary = (label > 0).astype(np.uint8)
    assert np.array_equal(rank_instances(binary, affine=np.eye(4))[0], ranked)


def test_more_than_255_lesions_are_all_kept_as_uint16(tmp_path, nifti):
    # 300 single voxels two apart on every axis: 300 separate 26-connected lesions.
    label = np.zeros((30, 3, 40), np.uint16)
    spots = [(i, j, k) for j in (0, 2) for i in range(0, 30, 2) for k in range(0, 40, 2)][:300]
    for n, (i, j, k) in enumerate(spots, start=1):
        label[i, j, k] = n
    root, out = tmp_path / "d", tmp_path / "out"
    nifti(root / "imagesTr" / "many_0000.nii.gz", np.ones(label.shape, np.float32), np.diag([1.0, 4.0, 1.0, 1.0]))
    nifti(root / "labelsTr" / "many.nii.gz", label, np.diag([1.0, 4.0, 1.0, 1.0]))
    (result,) = slice_dataset(root, out)
    assert (result.n_lesions, result.mask_dtype) == (300, "uint16")
    frames = [_read(p) for p in sorted((out / "labelsTr_instance" / "many").iterdir())]
    assert frames[0].dtype == np.uint16
    ids = np.unique(np.concatenate([f.ravel() for f in frames]))
    np.testing.assert_array_equal(ids, np.arange(301))


def test_slice_dataset_folders_and_manifest(tmp_path, nifti):
    root, out = tmp_path / "d", tmp_path / "out"
    _lsp_case(root, nifti, name="a")
    _lsp_case(root, nifti, name="t", subset="Ts_1", label_suffix="_instance")
    (root / "README.md").write_text("not a folder of images")
    (out / "imagesTr" / "a").mkdir(parents=True)
    (out / "imagesTr" / "a" / "00009.png").write_bytes(b"stale")  # from an earlier, longer run
    cases = slice_dataset(root, out)
    assert [(c.subset, c.case) for c in cases] == [("imagesTr", "a"), ("imagesTs_1", "t")]
    assert sorted(p.name for p in (out / "imagesTr" / "a").iterdir()) == [f"{n:05d}.png" for n in range(4)]
    assert (out / "labelsTs_1_instance" / "t" / "00003.png").is_file()  # not ..._instance_instance
    with Image.open(out / "imagesTr" / "a" / "00000.png") as img:
        assert (img.format, img.mode, img.size) == ("PNG", "L", (10, 16))
    manifest = json.loads((out / "slices.json").read_text())
    assert "row 0 = most superior" in manifest["orientation"]
    first = manifest["cases"][0]
    assert (first["slice_axis"], first["n_frames"], first["stored_orientation"]) == (1, 4, "LSP")
    assert first["image_dir"] == "imagesTr/a" and first["label_dir"] == "labelsTr_instance/a"
    assert first["spacing"] == pytest.approx([0.8, 7.8, 1.1])
    only = slice_dataset(root, tmp_path / "only", subsets=["Ts_1"])
    assert [c.case for c in only] == ["t"]


def test_slice_dataset_refuses_a_dataset_with_problems(tmp_path, nifti):
    root = tmp_path / "d"
    _lsp_case(root, nifti)
    nifti(root / "imagesTr" / "lonely_0000.nii.gz", np.ones((4, 4, 4), np.float32))
    with pytest.raises(SliceError, match=r"lonely_0000\.nii\.gz: image without label.*nfbench data check"):
        slice_dataset(root, tmp_path / "out")
    with pytest.raises(SliceError, match="no subset 'Ts_3'"):
        (root / "imagesTr" / "lonely_0000.nii.gz").unlink()
        slice_dataset(root, tmp_path / "out", subsets=["Ts_3"])

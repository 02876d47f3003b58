"""`check_dataset`: every problem reported with its file, per-case summaries, valid data passes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nfbench.io.check import (
    AFFINE_TOLERANCE_MM, MAX_UNUSED_LABEL_IDS, case_problems, check_dataset, label_problems, pair_problems,
)
from nfbench.io.volume import load_volume


def _lines(report) -> list[str]:
    return report.problem_lines()


def _labelled(root, name, image, label, nifti, *, affine=None, label_affine=None):
    nifti(root / "imagesTr" / f"{name}_0000.nii.gz", image, affine)
    nifti(root / "labelsTr" / f"{name}.nii.gz", label, affine if label_affine is None else label_affine)


def test_clean_dataset_has_no_problem_and_summarises_cases(dataset, affine_of):
    root = dataset(("case_001", "case_002"), affine=affine_of("RSA"))
    report = check_dataset(root)
    assert report.ok and report.problems == []
    assert [c.case for c in report.cases] == ["case_001", "case_002"]
    first = report.cases[0]
    # Stored (12, 6, 20) along (R, S, A) is (12, 20, 6) in canonical RAS.
    assert first.shape == (12, 20, 6)
    assert first.spacing == pytest.approx((0.8, 7.8, 1.1))
    assert first.orientation == "RSA"
    # Two 26-connected lesions of 8 and 1 voxels, each voxel 0.8 × 1.1 × 7.8 mm³.
    assert first.n_lesions == 2
    assert first.lesion_volume_ml == pytest.approx(9 * 0.8 * 1.1 * 7.8 / 1000)
    assert first.ok and first.image == "imagesTr/case_001_0000.nii.gz" and first.label == "labelsTr/case_001.nii.gz"


def test_scan_without_lesion_is_valid(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "empty", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti)
    report = check_dataset(root)
    assert report.ok
    assert (report.cases[0].n_lesions, report.cases[0].lesion_volume_ml) == (0, 0.0)


def test_instance_label_ids_are_counted_as_given(tmp_path, nifti):
    label = np.zeros((6, 6, 6), np.int16)
    label[0:2, 0:2, 0:2] = 1
    label[2:4, 2:4, 2:4] = 2  # touches lesion 1 diagonally: one component, two instances
    root = tmp_path / "d"
    _labelled(root, "inst", np.ones((6, 6, 6), np.float32), label, nifti)
    assert check_dataset(root).cases[0].n_lesions == 2


def test_shape_mismatch_names_both_files_and_shapes(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "case_003", np.ones((5, 4, 7), np.float32), np.zeros((5, 3, 7), np.uint8), nifti)
    report = check_dataset(root)
    assert _lines(report) == [
        "labelsTr/case_003.nii.gz: shape (5, 3, 7) differs from imagesTr/case_003_0000.nii.gz (5, 4, 7)"
    ]
    assert report.cases[0].n_lesions is None and not report.cases[0].ok


def test_affine_difference_beyond_tolerance_shows_both(tmp_path, nifti):
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti,
              label_affine=shifted)
    (line,) = _lines(check_dataset(root))
    assert line.startswith("labelsTr/a.nii.gz: affine [[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0]] differs from "
                           "imagesTr/a_0000.nii.gz [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]")
    assert "a corner voxel 0.5 mm apart > tolerance 0.001 mm" in line
    assert check_dataset(root, affine_tolerance=0.6).ok


def test_tiny_affine_difference_is_accepted(tmp_path, nifti):
    nudged = np.eye(4)
    nudged[2, 3] = 1e-5
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti, label_affine=nudged)
    assert check_dataset(root).ok


def test_4d_is_refused_but_trailing_singleton_is_not(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "four", np.ones((4, 4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), nifti)
    _labelled(root, "single", np.ones((4, 4, 4, 1), np.float32), np.zeros((4, 4, 4, 1), np.uint8), nifti)
    report = check_dataset(root)
    assert _lines(report) == ["imagesTr/four_0000.nii.gz: a 4D volume of shape (4, 4, 4, 3); expected a 3D volume"]
    assert {c.case: c.ok for c in report.cases} == {"four": False, "single": True}


def test_non_finite_image_values(tmp_path, nifti):
    image = np.ones((4, 4, 4), np.float32)
    image[0, 0, 0] = np.nan
    image[1, 1, 1] = np.inf
    image[2, 2, 2] = -np.inf
    root = tmp_path / "d"
    _labelled(root, "a", image, np.zeros((4, 4, 4), np.uint8), nifti)
    assert _lines(check_dataset(root)) == [
        "imagesTr/a_0000.nii.gz: image holds non-finite values (1 NaN, 2 infinite voxels)"
    ]


def test_non_integer_and_negative_labels(tmp_path, nifti):
    frac = np.zeros((4, 4, 4), np.float32)
    frac[1, 1, 1] = 0.5
    frac[2, 2, 2] = 1.0
    neg = np.zeros((4, 4, 4), np.int16)
    neg[0, 0, :2] = -1
    root = tmp_path / "d"
    _labelled(root, "frac", np.ones((4, 4, 4), np.float32), frac, nifti)
    _labelled(root, "neg", np.ones((4, 4, 4), np.float32), neg, nifti)
    assert _lines(check_dataset(root)) == [
        "labelsTr/frac.nii.gz: label holds non-integer values (1 voxels, e.g. 0.5); "
        "labels must be 0 (background) and 1..N (lesions)",
        "labelsTr/neg.nii.gz: label holds negative values (2 voxels, minimum -1)",
    ]


def test_a_label_scaled_on_save_is_refused_with_the_reason(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti)
    label = np.zeros((4, 4, 4))
    label[0, 0, 0], label[1, 1, 1], label[2, 2, 2] = 1, 2, 3
    scaled = nib.Nifti1Image(label, np.eye(4))
    scaled.set_data_dtype(np.int16)  # nibabel picks scl_slope = 3/32767: 1 reads back as 1.00000002
    nib.save(scaled, root / "labelsTr" / "a.nii.gz")
    (line,) = _lines(check_dataset(root))
    assert "non-integer values (3 voxels" in line and "scl_slope" in line


def test_integer_valued_float_label_is_fine(tmp_path, nifti):
    label = np.zeros((4, 4, 4), np.float32)
    label[1, 1, 1] = 1.0
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), label, nifti)
    report = check_dataset(root)
    assert report.ok and report.cases[0].n_lesions == 1


def test_truncated_gzip_is_reported(tmp_path, nifti):
    root = tmp_path / "d"
    rng = np.random.default_rng(0)
    _labelled(root, "a", rng.normal(size=(10, 10, 30)).astype(np.float32), np.zeros((10, 10, 30), np.uint8), nifti)
    path = root / "imagesTr" / "a_0000.nii.gz"
    path.write_bytes(path.read_bytes()[:-300])
    (line,) = _lines(check_dataset(root))
    assert line.startswith("imagesTr/a_0000.nii.gz: truncated or corrupt voxel data")


def test_unreadable_header_is_reported(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti)
    (root / "labelsTr" / "a.nii.gz").write_bytes(b"\x1f\x8b garbage")
    (line,) = _lines(check_dataset(root))
    assert line.startswith("labelsTr/a.nii.gz: not a readable NIfTI file")


def test_missing_partners_and_duplicates(tmp_path, nifti):
    root = tmp_path / "d"
    img, lab = np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8)
    _labelled(root, "pair", img, lab, nifti)
    nifti(root / "imagesTr" / "lonely_0000.nii.gz", img)
    nifti(root / "labelsTr" / "orphan.nii.gz", lab)
    nifti(root / "imagesTr" / "pair.nii.gz", img)  # same case as pair_0000
    _labelled(root, "pair", img, lab, nifti)
    nifti(root / "imagesTs_1" / "pair_0000.nii.gz", img)  # a training case again as a test case
    nifti(root / "labelsTs_1" / "pair.nii.gz", lab)
    lines = _lines(check_dataset(root))
    assert len(lines) == 4
    assert "imagesTr/lonely_0000.nii.gz: image without label (expected labelsTr/lonely.nii.gz)" in lines
    assert any(line.startswith("labelsTr/orphan.nii.gz: label without image") for line in lines)
    assert "imagesTr/pair_0000.nii.gz: case name 'pair' present twice (also pair.nii.gz)" in lines
    assert any(line.startswith("imagesTs_1/pair_0000.nii.gz: case name 'pair' is also in imagesTr") for line in lines)


def test_orphan_label_is_value_checked_too(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "ok", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti)
    nifti(root / "labelsTr" / "orphan.nii.gz", -np.ones((4, 4, 4), np.int8))
    lines = _lines(check_dataset(root))
    assert len(lines) == 2
    assert "labelsTr/orphan.nii.gz: label holds negative values (64 voxels, minimum -1)" in lines


def test_empty_and_missing_folders(tmp_path):
    assert _lines(check_dataset(tmp_path / "absent")) == [f"{tmp_path / 'absent'}: dataset folder does not exist"]
    root = tmp_path / "d"
    (root / "imagesTr").mkdir(parents=True)
    report = check_dataset(root)
    assert sorted(_lines(report)) == ["imagesTr: folder holds no NIfTI image", "labelsTr: label folder for imagesTr is missing"]
    assert not report.ok


def test_every_problem_is_reported_not_just_the_first(tmp_path, nifti):
    root = tmp_path / "d"
    img, lab = np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8)
    bad_img = img.copy()
    bad_img[0, 0, 0] = np.nan
    bad_lab = lab.astype(np.int8)
    bad_lab[0, 0, 0] = -3
    _labelled(root, "c1", bad_img, bad_lab, nifti)  # two problems in one case
    _labelled(root, "c2", img, np.zeros((4, 4, 5), np.uint8), nifti)
    _labelled(root, "c3", img, lab, nifti)
    nifti(root / "imagesTr" / "c4_0000.nii.gz", img)
    report = check_dataset(root)
    assert len(report.problems) == 4
    assert {c.case: c.ok for c in report.cases} == {"c1": False, "c2": False, "c3": True, "c4": False}
    data = report.to_dict()
    assert data["ok"] is False and len(data["cases"]) == 4
    assert {p["file"] for p in data["problems"]} == {
        "imagesTr/c1_0000.nii.gz", "labelsTr/c1.nii.gz", "labelsTr/c2.nii.gz", "imagesTr/c4_0000.nii.gz"}


def test_progress_callback_counts_cases(dataset):
    calls = []
    check_dataset(dataset(("a", "b", "c")), on_case=lambda done, total, name: calls.append((done, total, name)))
    assert calls == [(1, 3, "a"), (2, 3, "b"), (3, 3, "c")]


def test_label_problems_of_arrays_name_each_fault():
    ok = np.zeros((3, 3, 3), np.uint16)
    ok[0, 0, 0], ok[2, 2, 2] = 1, 7  # gaps in the numbering are fine
    assert label_problems(ok) == [] and label_problems(ok > 0) == [] and label_problems(np.zeros(0, np.int8)) == []
    frac = np.zeros((2, 2, 2), np.float64)
    frac[0, 0, 0], frac[1, 1, 1] = np.nan, -2.0
    assert label_problems(frac) == [
        "label holds non-integer values (1 voxels, e.g. nan); labels must be 0 (background) and 1..N (lesions)",
        "label holds negative values (1 voxels, minimum -2.0)",
    ]
    assert label_problems(np.zeros((2, 2, 2), np.complex64)) == ["label has unsupported data type complex64"]


def test_sparse_label_ids_are_refused_unless_instances_are_recomputed():
    label = np.zeros((4, 4, 4), np.uint32)
    label[0, 0, 0], label[3, 3, 3] = 1, 50_000_000
    assert label_problems(label) == [
        f"label IDs are too sparse: the largest is 50000000 but 2 distinct lesion IDs are used (49999998 unused, "
        f"more than {MAX_UNUSED_LABEL_IDS}; per-lesion tables would exhaust memory); renumber the lesions 1..2"
    ]
    assert label_problems(label, keep_ids=False) == []
    label[3, 3, 3] = MAX_UNUSED_LABEL_IDS + 2  # exactly the limit of unused IDs: accepted
    assert label_problems(label) == []
    label[3, 3, 3] += 1
    assert len(label_problems(label)) == 1


def test_data_check_refuses_sparse_ids_with_the_same_message(tmp_path, nifti):
    label = np.zeros((4, 4, 4), np.int32)
    label[1, 1, 1], label[2, 2, 2] = 3, 9_000_000
    root = tmp_path / "d"
    _labelled(root, "sparse", np.ones((4, 4, 4), np.float32), label, nifti)
    report = check_dataset(root)
    assert _lines(report) == [f"labelsTr/sparse.nii.gz: {message}" for message in label_problems(label)]
    assert "too sparse" in _lines(report)[0] and report.cases[0].n_lesions is None


class _Grid:
    def __init__(self, shape, affine):
        self.shape, self.affine = shape, affine


def test_a_rotation_counts_by_how_far_it_moves_the_grid_not_by_its_matrix_entries():
    # A whole-body grid (0.625 x 7.8 x 0.625 mm, 800 x 31 x 2900) turned by 0.09 degrees in the coronal
    # plane: every entry of the affine changes by less than the tolerance, the far corner moves 2.95 mm.
    image = _Grid((800, 31, 2900), np.diag([0.625, 7.8, 0.625, 1.0]))
    angle = np.deg2rad(0.09)
    turn = np.eye(4)
    turn[[0, 0, 2, 2], [0, 2, 0, 2]] = np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)
    turned = _Grid(image.shape, turn @ image.affine)
    assert np.abs(turned.affine - image.affine).max() < AFFINE_TOLERANCE_MM
    (problem,) = pair_problems(image, turned, image_name="img")
    assert "a corner voxel 2.952 mm apart" in problem


def test_pair_problems_of_shapes_and_affines():
    image = _Grid((4, 5, 6), np.diag([0.8, 1.1, 3.0, 1.0]))
    nudged = image.affine.copy()
    nudged[:3, 3] += 0.5 * AFFINE_TOLERANCE_MM  # every corner 0.87 tolerances away
    assert pair_problems(image, _Grid((4, 5, 6), nudged), image_name="img") == []
    assert pair_problems(image, _Grid((4, 6, 5), image.affine), image_name="img.nii.gz") == [
        "shape (4, 6, 5) differs from img.nii.gz (4, 5, 6)"]
    moved = image.affine.copy()
    moved[2, 3] = 2.0
    assert pair_problems(image, _Grid((4, 5, 6), moved), image_name="img.nii.gz") == [
        "affine [[0.8, 0, 0, 0], [0, 1.1, 0, 0], [0, 0, 3, 2]] differs from img.nii.gz "
        "[[0.8, 0, 0, 0], [0, 1.1, 0, 0], [0, 0, 3, 0]] (a corner voxel 2 mm apart > tolerance 0.001 mm)"]
    assert pair_problems(image, _Grid((4, 5, 6), moved), image_name="img", tolerance=2.0) == []
    broken = image.affine.copy()
    broken[0, 0] = np.nan
    assert len(pair_problems(image, _Grid((4, 5, 6), broken), image_name="img")) == 1


def test_pair_problems_of_loaded_volumes_match_data_check(tmp_path, nifti):
    shifted = np.eye(4)
    shifted[1, 3] = 0.25
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), nifti, label_affine=shifted)
    image, label = load_volume(root / "imagesTr" / "a_0000.nii.gz"), load_volume(root / "labelsTr" / "a.nii.gz")
    (message,) = pair_problems(image, label, image_name="imagesTr/a_0000.nii.gz")
    assert _lines(check_dataset(root)) == [f"labelsTr/a.nii.gz: {message}"]


def test_label_stored_in_another_axis_order_over_the_same_voxels_is_accepted(tmp_path, nifti, affine_of):
    # The image is stored R, S, A; the label holds the same voxels stored R, A, S (axes 1 and 2
    # swapped in both the array and the affine): both read the same canonical grid.
    image, label = np.ones((5, 4, 3), np.float32), np.zeros((5, 4, 3), np.uint8)
    label[1, 2, 0] = 1
    stored = affine_of("RSA")
    swapped = stored[:, [0, 2, 1, 3]]
    root = tmp_path / "d"
    nifti(root / "imagesTr" / "a_0000.nii.gz", image, stored)
    nifti(root / "labelsTr" / "a.nii.gz", np.ascontiguousarray(label.transpose(0, 2, 1)), swapped)
    report = check_dataset(root)
    assert report.ok and report.cases[0].n_lesions == 1
    assert report.cases[0].lesion_volume_ml == pytest.approx(0.8 * 1.1 * 7.8 / 1000)


def test_negative_tolerance_is_refused(dataset):
    with pytest.raises(ValueError, match="non-negative number of mm, got -1"):
        check_dataset(dataset(("a",)), affine_tolerance=-1)


def test_case_problems_of_files_give_the_data_check_messages(tmp_path, nifti):
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    bad = np.zeros((4, 4, 4), np.int16)
    bad[0, 0, 0] = -1
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), bad, nifti, label_affine=shifted)
    image, label = root / "imagesTr" / "a_0000.nii.gz", root / "labelsTr" / "a.nii.gz"
    found = case_problems(image, label, image_name="imagesTr/a_0000.nii.gz")
    assert [p.path for p in found] == [label, label]
    assert [p.message for p in found] == [p.message for p in check_dataset(root).problems]
    assert found[0].message.startswith("affine ") and "differs from imagesTr/a_0000.nii.gz [[1, 0" in found[0].message
    assert " differs from a_0000.nii.gz [[1, 0" in case_problems(image, label)[0].message
    assert found[1].message == "label holds negative values (1 voxels, minimum -1)"


def test_case_problems_of_a_usable_case_and_of_recomputed_instances(tmp_path, nifti):
    sparse = np.zeros((4, 4, 4), np.uint32)
    sparse[0, 0, 0], sparse[3, 3, 3] = 1, 10 * MAX_UNUSED_LABEL_IDS
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.float32), sparse, nifti)
    image, label = root / "imagesTr" / "a_0000.nii.gz", root / "labelsTr" / "a.nii.gz"
    assert [p.message for p in case_problems(image, label)] == label_problems(sparse)
    assert case_problems(image, label, keep_ids=False) == []  # components replace the IDs
    image.write_bytes(b"not a NIfTI file")
    (problem,) = case_problems(image, label, keep_ids=False)
    assert problem.path == image and problem.message.startswith("not a readable NIfTI file")


def _blobs(value_of, n: int, shape=(30, 6, 30)) -> np.ndarray:
    """``n`` separate 2×2×2 lesions, the n-th holding ``value_of(n)``."""
    label = np.zeros(shape, np.uint8)
    for i in range(n):
        label[3 * (i % 9) : 3 * (i % 9) + 2, 1:3, 3 * (i // 9) : 3 * (i // 9) + 2] = value_of(i)
    return label


def test_labels_whose_values_are_not_lesion_ids_are_reported(tmp_path, nifti):
    image = np.ones((30, 6, 30), np.float32)
    root = tmp_path / "d"
    _labelled(root, "scaled", image, _blobs(lambda i: 255, 11), nifti)  # a 0/1 mask saved as 0/255
    _labelled(root, "classes", image, _blobs(lambda i: 1 + i % 2, 9), nifti)  # a class map
    _labelled(root, "instances", image, _blobs(lambda i: i + 1, 11), nifti)
    report = check_dataset(root)
    classes, scaled = _lines(report)
    assert classes.startswith("labelsTr/classes.nii.gz: label values (1, 2) look like")
    assert "9 separate 26-connected regions for 2 distinct value(s)" in classes
    assert scaled.startswith("labelsTr/scaled.nii.gz: label values (255) look like a mask scaled to 0/255")
    assert "11 separate 26-connected regions" in scaled and "nfbench evaluate --recompute-instances" in scaled
    summary = {c.case: (c.ok, c.n_lesions) for c in report.cases}
    assert summary == {"classes": (False, None), "instances": (True, 11), "scaled": (False, None)}


def test_instance_map_with_a_lesion_in_two_pieces_passes(tmp_path, nifti):
    label = _blobs(lambda i: i + 1, 3)
    label[20, 4, 20] = 2  # lesion 2 has a second piece, far from the first
    root = tmp_path / "d"
    _labelled(root, "a", np.ones(label.shape, np.float32), label, nifti)
    report = check_dataset(root)
    assert report.ok and report.cases[0].n_lesions == 3


def test_complex_image_is_reported(tmp_path, nifti):
    root = tmp_path / "d"
    _labelled(root, "a", np.ones((4, 4, 4), np.complex64), np.zeros((4, 4, 4), np.uint8), nifti)
    assert _lines(check_dataset(root)) == [
        "imagesTr/a_0000.nii.gz: image holds complex values (complex64); store a real image (e.g. the magnitude) "
        "to evaluate it"
    ]

"""Lesion instances and the lesion table (order, volumes, boxes, centroids) on hand-made labels."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.lesions import (
    instance_ids_problem, instance_map, is_binary_label, lesion_table, lesions_frame, voxel_volume_ml,
)


def _two_blobs() -> np.ndarray:
    label = np.zeros((8, 6, 10), np.uint8)
    label[1:3, 1:3, 1:3] = 1  # 8 voxels
    label[5:8, 3:6, 6:9] = 1  # 27 voxels
    return label


def test_is_binary_label():
    assert is_binary_label(np.array([0, 1, 1]))
    assert is_binary_label(np.zeros(3, np.uint8))
    assert is_binary_label(np.zeros(0, np.uint8))
    assert not is_binary_label(np.array([0, 2]))


def test_binary_label_split_into_26_connected_components():
    label = np.zeros((5, 5, 5), np.uint8)
    label[0, 0, 0] = 1
    label[1, 1, 1] = 1  # touches (0, 0, 0) by a corner: same lesion under 26-connectivity
    label[4, 4, 4] = 1
    instances = instance_map(label)
    assert instances.dtype == np.uint8
    assert instances[0, 0, 0] == instances[1, 1, 1] != 0
    assert instances[4, 4, 4] not in (0, instances[0, 0, 0])
    assert len(np.unique(instances)) == 3


def test_instance_ids_kept_unless_recomputed():
    label = np.zeros((6, 6, 6), np.uint16)
    label[0:2, 0:2, 0:2] = 7
    label[2:4, 2:4, 2:4] = 300  # touches lesion 7 at a corner
    kept = instance_map(label)
    assert kept.dtype == np.uint16
    assert set(np.unique(kept)) == {0, 7, 300}
    merged = instance_map(label, recompute=True)
    assert set(np.unique(merged)) == {0, 1}  # one 26-connected component
    assert merged.dtype == np.uint8


def test_lesion_table_largest_first_with_volumes_boxes_and_centroids():
    affine = np.diag([0.5, 2.0, 4.0, 1.0])
    affine[:3, 3] = (10.0, -20.0, 100.0)
    lesions = lesion_table(instance_map(_two_blobs()), affine=affine)
    assert [les.rank for les in lesions] == [1, 2]
    big, small = lesions
    assert (big.n_voxels, small.n_voxels) == (27, 8)
    assert big.volume_ml == pytest.approx(27 * 0.5 * 2.0 * 4.0 / 1000)
    assert big.bbox == (slice(5, 8), slice(3, 6), slice(6, 9))
    assert big.centroid_ijk == pytest.approx((6.0, 4.0, 7.0))
    assert big.centroid_mm == pytest.approx((10.0 + 6 * 0.5, -20.0 + 4 * 2.0, 100.0 + 7 * 4.0))
    assert small.centroid_ijk == pytest.approx((1.5, 1.5, 1.5))


def test_equal_sizes_ordered_by_first_voxel_in_raster_order():
    label = np.zeros((6, 6, 6), np.uint8)
    label[4, 0, 0] = 1  # id 1, raster index 4*36 = 144
    label[0, 5, 5] = 2  # id 2, raster index 35: earlier, so ranked first
    label[2, 2, 2:4] = 3  # id 3, two voxels: the largest
    lesions = lesion_table(label, affine=np.eye(4))
    assert [les.lesion_id for les in lesions] == [3, 2, 1]
    assert [les.rank for les in lesions] == [1, 2, 3]


def test_empty_label_has_no_lesion():
    assert lesion_table(np.zeros((3, 3, 3), np.uint8), affine=np.eye(4)) == []
    assert lesions_frame([]).empty


def test_lesions_frame_columns():
    frame = lesions_frame(lesion_table(instance_map(_two_blobs()), affine=np.eye(4)))
    assert list(frame["lesion_rank"]) == [1, 2]
    assert list(frame["n_voxels"]) == [27, 8]
    assert (frame.loc[0, "bbox_i0"], frame.loc[0, "bbox_i1"]) == (5, 8)
    assert {"centroid_x_mm", "centroid_k", "volume_ml", "lesion_id"} <= set(frame.columns)


@pytest.mark.parametrize(("matrix", "mm3"), [
    ([[0.5, 0, 0], [0, 2.0, 0], [0, 0, 4.0]], 4.0),
    ([[-0.8, 0, 0], [0, 0, 7.8], [0, 1.1, 0]], 0.8 * 1.1 * 7.8),  # coronal RSA with a flip: sign dropped
    ([[0.5, 0.3, 0], [0, 2.0, 0.7], [0, 0, 4.0]], 4.0),  # sheared: not the product of the column lengths
])
def test_voxel_volume_is_the_absolute_determinant_in_ml(matrix, mm3):
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = (100.0, -50.0, 7.0)  # the origin does not matter
    assert voxel_volume_ml(affine) == pytest.approx(mm3 / 1000)


def _separate_blobs(values: list[int], shape=(30, 6, 30)) -> np.ndarray:
    """One 2×2×2 blob per entry of ``values``, far enough apart to be separate 26-connected regions."""
    label = np.zeros(shape, np.uint8)
    for n, value in enumerate(values):
        i, k = 3 * (n % 9), 3 * (n // 9)
        label[i : i + 2, 1:3, k : k + 2] = value
    return label


def test_mask_scaled_to_255_is_not_read_as_lesion_ids():
    label = _separate_blobs([255] * 11)
    problem = instance_ids_problem(label)
    assert problem is not None
    assert "label values (255)" in problem and "11 separate 26-connected regions" in problem
    assert "--recompute-instances" in problem and "recompute_instances" in problem
    assert len(np.unique(instance_map(label, recompute=True))) == 12  # the fix the message names


def test_class_map_is_not_read_as_lesion_ids():
    problem = instance_ids_problem(_separate_blobs([1, 2, 1, 2, 1, 2, 1, 2, 2]))
    assert problem is not None and "label values (1, 2)" in problem and "9 separate" in problem


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_instance_maps_are_accepted(dtype):
    label = _separate_blobs(list(range(1, 20))).astype(dtype)
    assert instance_ids_problem(label) is None
    label[25, 4, 25] = 7  # lesion 7 in two pieces
    assert instance_ids_problem(label) is None
    touching = np.zeros((6, 6, 6), dtype)
    touching[0:2, 0:2, 0:2], touching[2:4, 2:4, 2:4] = 2, 3  # separate instances touching at a corner
    assert instance_ids_problem(touching) is None


def test_binary_and_one_region_labels_are_accepted():
    assert instance_ids_problem(_separate_blobs([1] * 11)) is None  # binary: split into components anyway
    assert instance_ids_problem(np.zeros((3, 3, 3), np.uint8)) is None
    # 0/255 with one lesion is indistinguishable from an instance map with lesion 255: read as such.
    assert instance_ids_problem(_separate_blobs([255])) is None
    assert instance_ids_problem(_separate_blobs([255] * 2)) is None  # at most two regions per value
    assert instance_ids_problem(_separate_blobs([255] * 3)) is not None

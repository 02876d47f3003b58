from __future__ import annotations

import math

import numpy as np
import pytest
import surface_distance as sd
from scipy import ndimage

import nfbench.metrics.surface as surface
from nfbench.metrics.surface import SurfaceMetrics, surface_distances, surface_metrics, surfel_area_table


def _blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=2.0)
    return noise > np.quantile(noise, rng.uniform(0.6, 0.95))


def _reference(pred: np.ndarray, truth: np.ndarray, spacing, tolerance_mm: float) -> tuple[float, float]:
    ref = sd.compute_surface_distances(truth, pred, spacing)
    return sd.compute_surface_dice_at_tolerance(ref, tolerance_mm), sd.compute_robust_hausdorff(ref, 95)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.625, 7.8, 0.625), (1.0, 2.0, 3.0), (0.3, 4.7, 2.2)])
def test_area_table_equals_the_package_table(spacing):
    ours = surfel_area_table(spacing)
    np.testing.assert_allclose(ours, sd.lookup_tables.create_table_neighbour_code_to_surface_area(spacing), atol=1e-12)
    assert ours[0] == ours[255] == 0.0
    # One voxel set is one marching-cubes corner triangle: area sqrt(3)/8 at unit spacing.
    if spacing == (1.0, 1.0, 1.0):
        assert ours[1] == pytest.approx(math.sqrt(3) / 8)
        assert ours[0b11110000] == pytest.approx(1.0)  # a flat face across the cube


@pytest.mark.parametrize("spacing", [(0.625, 7.8, 0.625), (1.0, 2.0, 3.0)], ids=["coronal", "aniso"])
@pytest.mark.parametrize("tolerance_mm", [1.0, 2.0])
def test_agrees_with_surface_distance_package(spacing, tolerance_mm):
    rng = np.random.default_rng(int(tolerance_mm * 10) + int(spacing[1]))
    for _ in range(5):
        shape = tuple(int(v) for v in rng.integers(10, [40, 30, 20], endpoint=True))
        pred, truth = _blob(rng, shape), _blob(rng, shape)
        ours = surface_metrics(pred, truth, spacing=spacing, tolerance_mm=tolerance_mm)
        nsd, hd95 = _reference(pred, truth, spacing, tolerance_mm)
        assert ours.nsd == pytest.approx(nsd, abs=1e-6)
        assert ours.hd95_mm == pytest.approx(hd95, abs=1e-6)


def test_masks_touching_the_volume_border_agree_with_the_package():
    pred = np.zeros((6, 5, 4), bool)
    truth = np.zeros((6, 5, 4), bool)
    pred[3:, 2:, 1:], truth[2:, 2:, 2:] = True, True
    ours = surface_metrics(pred, truth, spacing=(1.0, 1.0, 1.0), tolerance_mm=0.5)
    nsd, hd95 = _reference(pred, truth, (1.0, 1.0, 1.0), 0.5)
    assert ours.nsd == pytest.approx(nsd, abs=1e-9)
    assert ours.hd95_mm == pytest.approx(hd95, abs=1e-9)


@pytest.mark.parametrize("offset", [(30, 5, 60), (0, 0, 0), (70, 28, 102)], ids=["inside", "low-corner", "high-corner"])
def test_crop_gives_exactly_the_full_volume_result(offset):
    rng = np.random.default_rng(3)
    small_pred, small_truth = _blob(rng, (20, 12, 18)), _blob(rng, (20, 12, 18))
    pred, truth = np.zeros((90, 40, 120), bool), np.zeros((90, 40, 120), bool)
    where = tuple(slice(o, o + n) for o, n in zip(offset, small_pred.shape))
    pred[where], truth[where] = small_pred, small_truth
    spacing = (0.625, 7.8, 0.625)
    full, small = surface_distances(pred, truth, spacing=spacing), surface_distances(small_pred, small_truth, spacing=spacing)
    for key in full:
        np.testing.assert_array_equal(full[key], small[key])
    ours = surface_metrics(pred, truth, spacing=spacing)
    assert ours == surface_metrics(small_pred, small_truth, spacing=spacing)
    nsd, hd95 = _reference(pred, truth, spacing, 2.0)
    assert ours.nsd == pytest.approx(nsd, abs=1e-9) and ours.hd95_mm == pytest.approx(hd95, abs=1e-9)


def test_sparse_and_dense_corner_codes_agree(monkeypatch):
    rng = np.random.default_rng(11)
    pred, truth = np.zeros((60, 20, 70), bool), np.zeros((60, 20, 70), bool)
    for mask in (pred, truth):  # a few scattered blobs: sparse in their common box
        for _ in range(4):
            corner = rng.integers(0, [52, 14, 62])
            mask[corner[0]:corner[0] + 8, corner[1]:corner[1] + 6, corner[2]:corner[2] + 8] |= _blob(rng, (8, 6, 8))
    spacing = (1.0, 2.0, 3.0)
    monkeypatch.setattr(surface, "_SPARSE_RATIO", 10**9)  # always sparse
    sparse = surface_distances(pred, truth, spacing=spacing)
    monkeypatch.setattr(surface, "_SPARSE_RATIO", 0)  # always dense
    dense = surface_distances(pred, truth, spacing=spacing)
    for key in dense:
        np.testing.assert_array_equal(sparse[key], dense[key])
    nsd, hd95 = _reference(pred, truth, spacing, 2.0)
    ours = surface_metrics(pred, truth, spacing=spacing)
    assert ours.nsd == pytest.approx(nsd, abs=1e-6) and ours.hd95_mm == pytest.approx(hd95, abs=1e-6)


def test_single_voxels_by_hand():
    # One voxel has 8 surface corners of equal area; a neighbour one voxel further along axis 0
    # (2 mm) shares 4 corners (distance 0) and has 4 corners 2 mm from the other surface.
    pred, truth = np.zeros((4, 3, 3), bool), np.zeros((4, 3, 3), bool)
    pred[1, 1, 1], truth[2, 1, 1] = True, True
    d = surface_distances(pred, truth, spacing=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(np.sort(d["pred_to_truth"]), [0.0] * 4 + [2.0] * 4)
    np.testing.assert_allclose(d["pred_areas"], d["pred_areas"][0])
    assert surface_metrics(pred, truth, spacing=(2.0, 1.0, 1.0), tolerance_mm=1.0) == SurfaceMetrics(0.5, 2.0)
    assert surface_metrics(pred, truth, spacing=(2.0, 1.0, 1.0), tolerance_mm=2.0) == SurfaceMetrics(1.0, 2.0)
    assert surface_metrics(pred, pred, spacing=(2.0, 1.0, 1.0)) == SurfaceMetrics(1.0, 0.0)


def test_shifted_cube_and_tolerance():
    truth = np.zeros((12, 12, 12), bool)
    truth[3:8, 3:8, 3:8] = True
    shifted = np.roll(truth, 3, axis=0)
    result = surface_metrics(shifted, truth, spacing=(1, 1, 1), tolerance_mm=1.0)
    assert 0.0 < result.nsd < 1.0 and result.hd95_mm == pytest.approx(3.0)
    # 3 mm apart: within a 3 mm tolerance everything overlaps.
    assert surface_metrics(shifted, truth, spacing=(1, 1, 1), tolerance_mm=3.0).nsd == 1.0


def test_empty_masks_follow_the_documented_convention():
    empty, blob = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    blob[1:3, 1:3, 1:3] = True
    assert surface_metrics(empty, empty, spacing=(1, 1, 1)) == SurfaceMetrics(1.0, 0.0)
    for a, b in ((empty, blob), (blob, empty)):
        assert surface_metrics(a, b, spacing=(1, 1, 1)) == SurfaceMetrics(0.0, math.inf)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(2, 2, 2\) differs from truth shape \(2, 2, 3\)"):
        surface_metrics(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), spacing=(1, 0, 1))

from __future__ import annotations

import numpy as np
import pytest
import surface_distance as sd
from scipy import ndimage

from nfbench.metrics.surface import surface_metrics


def _blob(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=2.0)
    return noise > np.quantile(noise, rng.uniform(0.6, 0.95))


@pytest.mark.parametrize("spacing", [(0.625, 7.8, 0.625), (1.0, 2.0, 3.0)], ids=["coronal", "aniso"])
@pytest.mark.parametrize("tolerance_mm", [1.0, 2.0])
def test_agrees_with_surface_distance_package(spacing, tolerance_mm):
    rng = np.random.default_rng(int(tolerance_mm * 10) + int(spacing[1]))
    for _ in range(5):
        shape = tuple(int(v) for v in rng.integers(10, [40, 30, 20], endpoint=True))
        pred, truth = _blob(rng, shape), _blob(rng, shape)
        ours = surface_metrics(pred, truth, spacing=spacing, tolerance_mm=tolerance_mm)
        ref = sd.compute_surface_distances(truth, pred, spacing)
        assert ours.nsd == pytest.approx(sd.compute_surface_dice_at_tolerance(ref, tolerance_mm), abs=1e-6)
        assert ours.hd95_mm == pytest.approx(sd.compute_robust_hausdorff(ref, 95), abs=1e-6)


def test_crop_equals_full_volume():
    rng = np.random.default_rng(3)
    small_pred, small_truth = _blob(rng, (20, 12, 18)), _blob(rng, (20, 12, 18))
    pred, truth = np.zeros((90, 40, 120), bool), np.zeros((90, 40, 120), bool)
    pred[30:50, 5:17, 60:78], truth[30:50, 5:17, 60:78] = small_pred, small_truth
    spacing = (0.625, 7.8, 0.625)
    ref = sd.compute_surface_distances(truth, pred, spacing)
    ours = surface_metrics(pred, truth, spacing=spacing)
    assert ours == surface_metrics(small_pred, small_truth, spacing=spacing)
    assert ours.nsd == pytest.approx(sd.compute_surface_dice_at_tolerance(ref, 2.0), abs=1e-9)


def test_masks_touching_the_volume_border():
    pred = np.zeros((6, 5, 4), bool)
    truth = np.zeros((6, 5, 4), bool)
    pred[3:, 2:, 1:], truth[2:, 2:, 2:] = True, True
    ref = sd.compute_surface_distances(truth, pred, (1.0, 1.0, 1.0))
    ours = surface_metrics(pred, truth, spacing=(1.0, 1.0, 1.0), tolerance_mm=0.5)
    assert ours.nsd == pytest.approx(sd.compute_surface_dice_at_tolerance(ref, 0.5), abs=1e-9)


def test_identical_masks_are_perfect_and_shifted_ones_are_not():
    truth = np.zeros((12, 12, 12), bool)
    truth[3:8, 3:8, 3:8] = True
    assert surface_metrics(truth, truth, spacing=(1, 1, 1)) == surface_metrics(truth, truth.copy(), spacing=(2, 2, 2))
    assert surface_metrics(truth, truth, spacing=(1, 1, 1)).nsd == 1.0
    assert surface_metrics(truth, truth, spacing=(1, 1, 1)).hd95_mm == 0.0
    shifted = np.roll(truth, 3, axis=0)
    result = surface_metrics(shifted, truth, spacing=(1, 1, 1), tolerance_mm=1.0)
    assert 0.0 < result.nsd < 1.0 and result.hd95_mm == pytest.approx(3.0)
    # 3 mm apart: within a 3 mm tolerance everything overlaps.
    assert surface_metrics(shifted, truth, spacing=(1, 1, 1), tolerance_mm=3.0).nsd == 1.0


def test_empty_masks_follow_the_documented_convention():
    empty, full = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    full[1:3, 1:3, 1:3] = True
    assert surface_metrics(empty, empty, spacing=(1, 1, 1)) == surface_metrics(empty, empty.copy(), spacing=(1, 1, 1))
    assert surface_metrics(empty, empty, spacing=(1, 1, 1)).nsd == 1.0
    assert surface_metrics(empty, empty, spacing=(1, 1, 1)).hd95_mm == 0.0
    for a, b in ((empty, full), (full, empty)):
        result = surface_metrics(a, b, spacing=(1, 1, 1))
        assert result.nsd == 0.0 and result.hd95_mm == np.inf

"""Native grid ↔ model grid: orientation, resampling, index mapping and fixed-size windows."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.models.base import check_prediction
from nfbench.models.blocks.grids import GridMap, Orientation, box_around, cut, paste, resample, window_around


def _unique(shape) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int32).reshape(shape)


def test_orientation_by_hand():
    native = _unique((2, 3, 4))
    lps = Orientation("lps")
    assert lps.axes == (0, 1, 2) and lps.flips == (True, True, False)
    assert lps.to_model(native)[0, 0, 0] == native[1, 2, 0]  # most left, most posterior, most inferior
    spl = Orientation("SPL")  # a SimpleITK image's numpy array: z, y, x
    model = spl.to_model(native)
    assert model.shape == (4, 3, 2) and model[3, 0, 1] == native[0, 2, 3]
    assert spl.index_to_model((0, 2, 3), native.shape) == (3, 0, 1)
    assert spl.index_to_native((3, 0, 1), native.shape) == (0, 2, 3)
    np.testing.assert_array_equal(spl.to_native(model), native)
    with pytest.raises(ValueError, match="'RRS' must name each of R/L, A/P, S/I once"):
        Orientation("RRS")


@pytest.mark.parametrize("codes", ["RAS", "LPS", "SPL", "AIR"])
def test_orientation_indices_follow_the_array(codes):
    native = _unique((5, 3, 4))
    orientation = Orientation(codes)
    model = orientation.to_model(native)
    for ijk in np.ndindex(native.shape):
        t = orientation.index_to_model(ijk, native.shape)
        assert model[t] == native[ijk] and orientation.index_to_native(t, native.shape) == ijk


def test_equal_spacing_is_the_identity():
    rng = np.random.default_rng(0)
    native = rng.normal(size=(12, 5, 9)).astype(np.float32)
    box = (slice(2, 10), slice(1, 5), slice(0, 7))
    grid = GridMap.build(native.shape, (1.0, 3.0, 1.0), box=box, spacing=(1.0, 3.0, 1.0))
    assert grid.shape == (8, 4, 7) and grid.spacing == (1.0, 3.0, 1.0)
    np.testing.assert_array_equal(grid.to_model(native), native[box])
    np.testing.assert_array_equal(grid.to_native(grid.to_model(native)), native[box])
    assert grid.index_to_model((5, 2, 3)) == (3, 1, 3) and grid.index_to_native((3, 1, 3)) == (5, 2, 3)


def test_coarser_grid_and_back_keeps_the_volume():
    spacing = (1.0, 3.0, 1.0)
    grid_mm = np.indices((60, 20, 60)).astype(float) * np.asarray(spacing)[:, None, None, None]
    mask = ((grid_mm - np.array([30.0, 30.0, 30.0])[:, None, None, None]) ** 2).sum(axis=0) <= 18.0**2
    grid = GridMap.build(mask.shape, spacing, codes="LPS", spacing=(2.0, 3.0, 2.0))
    assert grid.shape == (30, 20, 30)
    coarse = grid.to_model(mask, order=0)
    assert coarse.dtype == bool
    back = grid.to_native(coarse)
    assert back.shape == mask.shape and back.dtype == bool
    assert abs(int(back.sum()) - int(mask.sum())) <= 0.05 * mask.sum()
    assert 2 * np.count_nonzero(back & mask) / (back.sum() + mask.sum()) > 0.95


def test_resampled_indices_land_on_the_sampled_voxel():
    native = _unique((12, 6, 9))
    grid = GridMap.build(native.shape, (1.0, 2.0, 1.5), box=(slice(1, 11), slice(0, 6), slice(0, 9)),
                         codes="PIR", spacing=(4.0, 4.5, 2.0))
    model = grid.to_model(native, order=0)
    assert model.shape == grid.shape == (3, 3, 5)
    for t in np.ndindex(model.shape):
        assert model[t] == native[grid.index_to_native(t)]
    # Along axis 0 (native 10 voxels, model 5 after reorientation: the R axis): 2 native voxels per model voxel.
    assert grid.index_to_model((1, 0, 0))[2] == 0 and grid.index_to_model((3, 0, 0))[2] == 1
    assert grid.index_to_model((10, 0, 0))[2] == 4
    with pytest.raises(ValueError, match="outside the crop"):
        grid.index_to_model((0, 0, 0))


def test_resample_linear_is_exact_on_a_linear_ramp_inside():
    ramp = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    fine = resample(ramp, (16, 2, 2), order=1)
    # Fine voxel t sits at native coordinate (t + 0.5) / 2 - 0.5; clamped at the outer half voxels.
    np.testing.assert_allclose(fine[1:-1, 0, 0], (np.arange(1, 15) + 0.5) / 2 - 0.5, atol=1e-6)


def test_prediction_is_the_native_crop_in_its_box():
    grid = GridMap.build((20, 10, 20), (1.0, 1.0, 1.0), box=(slice(4, 8), slice(2, 5), slice(10, 16)), codes="LAI")
    model_mask = np.zeros(grid.shape, bool)
    model_mask[grid.index_to_model((5, 3, 12))] = True
    answer = check_prediction("test", grid.prediction(model_mask), (20, 10, 20))
    full = np.zeros((20, 10, 20), bool)
    full[answer.box] = answer.mask
    assert np.argwhere(full).tolist() == [[5, 3, 12]]


def test_box_around_in_mm():
    box = box_around((5, 0, 50), 5.0, (2.5, 7.8, 2.5), (100, 10, 52))
    assert box == (slice(3, 8), slice(0, 2), slice(48, 52))


def test_window_pads_past_the_border():
    array = _unique((6, 5, 4))
    window = window_around((0, 2, 3), (4, 3, 6), array.shape)
    assert window.inside == (slice(0, 2), slice(1, 4), slice(0, 4))
    assert window.within == (slice(2, 4), slice(0, 3), slice(0, 4))
    patch = cut(array, window, fill=-1)
    assert patch.shape == (4, 3, 6) and patch[0, 0, 0] == -1 and patch[2, 0, 0] == array[0, 1, 0]
    assert (patch == -1).sum() == patch.size - array[window.inside].size
    np.testing.assert_array_equal(paste(patch, window), array[window.inside])
    big = cut(array[None], window_around((3, 2, 2), (10, 10, 10), array.shape))  # larger than the array, a channel axis
    assert big.shape == (1, 10, 10, 10) and big.sum() == array.sum()

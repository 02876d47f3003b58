"""Native grid ↔ model grid: orientation, resampling, index mapping and fixed-size windows."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.bbox import mask_bbox
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


def test_nearest_neighbour_is_exact_at_ties():
    # 2 voxels onto 23: output voxel 11's centre (11.5 / 23 · 2 = 1.0) is the border of input voxel 1
    # exactly; scipy's affine_transform takes voxel 0 there by floating-point rounding
    resampled = resample(np.array([0, 1], np.int32).reshape(2, 1, 1), (23, 1, 1), order=0)[:, 0, 0]
    np.testing.assert_array_equal(resampled, (np.arange(23) >= 11).astype(np.int32))
    assert resample(np.ones((3, 2, 2), bool), (7, 5, 1), order=0).dtype == bool


# (native shape, native spacing, crop, codes, model spacing): up- and down-sampling, anisotropic, flipped
_GRIDS = {
    "RAS-coarser": ((23, 7, 30), (0.625, 7.8, 0.625), None, "RAS", (1.7, 7.8, 1.7)),
    "RSA-finer": ((17, 5, 19), (1.0, 7.8, 1.3), None, "RSA", (0.625, 0.625, 3.0)),
    "SRA-mixed": ((40, 6, 31), (0.85, 7.8, 1.7), (slice(3, 37), slice(1, 6), slice(0, 29)), "SRA", (1.7, 1.1, 7.8)),
    "LPS-crop": ((29, 11, 13), (0.7, 2.5, 1.9), (slice(2, 27), slice(0, 9), slice(4, 13)), "LPS", (1.5, 1.1, 0.7)),
    "PIR-identity": ((9, 8, 7), (1.0, 1.0, 1.0), None, "PIR", None),
}


@pytest.mark.parametrize("case", list(_GRIDS), ids=list(_GRIDS))
def test_native_box_of_and_to_native_box_equal_the_full_map(case):
    native_shape, native_spacing, crop, codes, spacing = _GRIDS[case]
    grid = GridMap.build(native_shape, native_spacing, box=crop, codes=codes, spacing=spacing)
    rng = np.random.default_rng(sum(map(ord, case)))
    model = rng.integers(0, 1000, grid.shape).astype(np.int32)
    full = grid.to_native(model)
    assert full.shape == grid.crop_shape
    # the full map, voxel by voxel: each native voxel holds the model voxel index_to_model names
    offset = [s.start for s in grid.box]
    for ijk in np.ndindex(grid.crop_shape):
        assert full[ijk] == model[grid.index_to_model([v + o for v, o in zip(ijk, offset)])]
    # which model voxel each native voxel took, along every model axis
    taken = [np.zeros(grid.crop_shape, int) for _ in range(3)]
    for ijk in np.ndindex(grid.crop_shape):
        for axis, t in enumerate(grid.index_to_model([v + o for v, o in zip(ijk, offset)])):
            taken[axis][ijk] = t
    for _ in range(25):
        lo = [int(rng.integers(0, n)) for n in grid.crop_shape]
        native_box = tuple(slice(o + a, o + int(rng.integers(a, n + 1))) for o, a, n in zip(offset, lo, grid.crop_shape))
        local = tuple(slice(b.start - o, b.stop - o) for b, o in zip(native_box, offset))
        part = grid.to_native_box(model, native_box)
        np.testing.assert_array_equal(part, full[local])
        assert part.flags.c_contiguous

        a = [int(rng.integers(0, m)) for m in grid.shape]
        model_box = tuple(slice(s, int(rng.integers(s + 1, m + 1))) for s, m in zip(a, grid.shape))
        inside = np.ones(grid.crop_shape, bool)
        for axis, b in enumerate(model_box):
            inside &= (taken[axis] >= b.start) & (taken[axis] < b.stop)
        expected = mask_bbox(inside)
        got = grid.native_box_of(model_box)
        if expected is None:
            assert any(s.stop == s.start for s in got)
        else:
            assert got == tuple(slice(e.start + o, e.stop + o) for e, o in zip(expected, offset))
    with pytest.raises(ValueError, match="not inside the crop"):
        grid.to_native_box(model, tuple(slice(0, n + 1) for n in native_shape))

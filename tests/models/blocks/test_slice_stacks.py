"""Coronal slice stacks for 2D models: the frames of `nfbench data slice` and the way back."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.models.blocks.slices import from_stack, pixel_to_voxel, to_stack, voxel_to_pixel


def test_coronal_stack_by_hand():
    volume = np.arange(5 * 3 * 4).reshape(5, 3, 4)  # (R, A, S) = (5, 3, 4)
    stack = to_stack(volume, axis=1)
    assert stack.shape == (3, 4, 5)  # frames along A; rows along S (4); columns along R (5)
    # Row 0 = most superior (s = 3), column 0 = patient's rightmost (r = 4), frame 0 = most posterior.
    assert stack[0, 0, 0] == volume[4, 0, 3]
    assert stack[2, 3, 1] == volume[3, 2, 0]
    assert voxel_to_pixel((3, 2, 0), volume.shape, 1) == (2, 3, 1)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_round_trip_and_pixel_indices(axis):
    rng = np.random.default_rng(axis)
    volume = rng.integers(0, 1000, size=(6, 4, 5))
    mask = volume > 500
    stack = to_stack(volume, axis)
    np.testing.assert_array_equal(from_stack(stack, axis), volume)
    back = from_stack(to_stack(mask, axis), axis)
    assert back.dtype == bool and back.flags.c_contiguous
    np.testing.assert_array_equal(back, mask)
    for ijk in np.ndindex(volume.shape):
        pixel = voxel_to_pixel(ijk, volume.shape, axis)
        assert stack[pixel] == volume[ijk] and pixel_to_voxel(pixel, volume.shape, axis) == ijk


def test_bad_axis_and_stack():
    with pytest.raises(ValueError, match="slice axis must be 0, 1 or 2, got 3"):
        to_stack(np.zeros((2, 2, 2)), 3)
    with pytest.raises(ValueError, match=r"\(frames, rows, columns\)"):
        from_stack(np.zeros((2, 2)), 1)

"""Slice stacks for 2D models, in the orientation of ``nfbench data slice``, and back to 3D.

Frame ``n`` of a stack is :func:`nfbench.io.slices.display_plane` of the canonical volume at index
``n`` along the slice axis (the thick axis by default, :func:`nfbench.io.slices.slice_axis`):
for coronal whole-body MRI, row 0 is the most superior voxel row, column 0 the patient's
rightmost voxel and frame 0 the most posterior slice, exactly as the PNG frames a 2D model was
fine-tuned on. The display transform is a transpose about the anti-diagonal, its own inverse, so
the way back applies it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nfbench.io.slices import display_plane, slice_axis

__all__ = ["to_stack", "from_stack", "voxel_to_pixel", "pixel_to_voxel", "slice_axis"]


def _check_axis(axis: int) -> None:
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")


def to_stack(volume: np.ndarray, axis: int) -> np.ndarray:
    """The frames of a canonical 3D array along ``axis``: ``(frames, rows, columns)``, dtype kept."""
    _check_axis(axis)
    return np.stack([display_plane(volume, axis, n) for n in range(volume.shape[axis])])


def from_stack(stack: np.ndarray, axis: int) -> np.ndarray:
    """The canonical 3D array whose frames along ``axis`` are ``stack`` (inverse of :func:`to_stack`)."""
    _check_axis(axis)
    if stack.ndim != 3:
        raise ValueError(f"a slice stack is (frames, rows, columns), got shape {stack.shape}")
    planes = [display_plane(frame[:, :, np.newaxis], 2, 0) for frame in stack]
    return np.ascontiguousarray(np.stack(planes, axis=axis))


def _plane_axes(axis: int) -> tuple[int, int]:
    a, b = (n for n in range(3) if n != axis)
    return a, b


def voxel_to_pixel(ijk: Sequence[int], shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """``(frame, row, column)`` of a canonical voxel in the stack along ``axis`` (a click for a 2D model)."""
    _check_axis(axis)
    a, b = _plane_axes(axis)
    return int(ijk[axis]), int(shape[b] - 1 - ijk[b]), int(shape[a] - 1 - ijk[a])


def pixel_to_voxel(pixel: Sequence[int], shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """The canonical voxel of ``(frame, row, column)`` in the stack along ``axis``."""
    _check_axis(axis)
    a, b = _plane_axes(axis)
    frame, row, col = pixel
    ijk = [0, 0, 0]
    ijk[axis], ijk[b], ijk[a] = int(frame), int(shape[b] - 1 - row), int(shape[a] - 1 - col)
    return tuple(ijk)  # type: ignore[return-value]

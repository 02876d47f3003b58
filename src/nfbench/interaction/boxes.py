"""Box prompts: the 2D box a simulated user draws around a lesion on one coronal slice (axis 1)."""

from __future__ import annotations

import numpy as np

from nfbench.lesions import Lesion
from nfbench.types import Box

__all__ = ["largest_slice_box", "middle_slice_box"]

#: The CVPR 2025 challenge jitters each side of a box by 0-5 pixels of a 256-pixel image.
_CVPR_MAX_SHIFT = 5
_CVPR_REFERENCE_SIZE = 256


def _plane_box(lesion: Lesion, plane: np.ndarray, j: int) -> Box:
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    i0, j0, k0 = (s.start for s in lesion.bbox)
    return Box((i0 + rows[0], j0 + j, k0 + cols[0]), (i0 + rows[-1] + 1, j0 + j + 1, k0 + cols[-1] + 1))


def largest_slice_box(instances: np.ndarray, lesion: Lesion) -> Box:
    """The lesion's tight 2D box on the coronal slice where it has most voxels (first on ties)."""
    mask = instances[lesion.bbox] == lesion.lesion_id
    j = int(np.argmax(np.count_nonzero(mask, axis=(0, 2))))
    return _plane_box(lesion, mask[:, j, :], j)


def middle_slice_box(instances: np.ndarray, lesion: Lesion, rng: np.random.Generator) -> Box:
    """The CVPR 2025 challenge's box (its ``get_boxes.py``): on the middle one of the slices that hold
    the lesion (``slices[len // 2]``), widened on every side by the same random shift of 0-5 pixels
    scaled by image size / 256 per in-plane axis, clipped to the image."""
    mask = instances[lesion.bbox] == lesion.lesion_id
    slices = np.flatnonzero(mask.any(axis=(0, 2)))
    j = int(slices[len(slices) // 2])
    box = _plane_box(lesion, mask[:, j, :], j)
    shift = int(rng.integers(0, _CVPR_MAX_SHIFT + 1))
    shape = instances.shape
    grow = [int(shift * shape[axis] / _CVPR_REFERENCE_SIZE) for axis in (0, 2)]
    lo, hi = list(box.lo), list(box.hi)
    for axis, g in zip((0, 2), grow):
        lo[axis] = max(lo[axis] - g, 0)
        hi[axis] = min(hi[axis] + g, shape[axis])
    return Box(tuple(lo), tuple(hi))  # type: ignore[arg-type]

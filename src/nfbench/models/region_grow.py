"""`region-grow`: connected-threshold region growing from each positive click."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.models._local import LocalSession, Region, ball, crop_around
from nfbench.types import BoolMask, Click

__all__ = ["RegionGrowModel", "grow_from_seed"]

_SIX = ndimage.generate_binary_structure(3, 1)


def _fill_holes(mask: BoolMask, thick_axis: int) -> BoolMask:
    # 3D filling misses a dark centre that is open towards a thick neighbouring slice, so fill
    # every slice across the thick axis too ("target sign": bright rim, darker core).
    filled = ndimage.binary_fill_holes(mask)
    for index in range(mask.shape[thick_axis]):
        plane = [slice(None)] * 3
        plane[thick_axis] = index
        filled[tuple(plane)] = ndimage.binary_fill_holes(filled[tuple(plane)])
    return filled


def grow_from_seed(crop: np.ndarray, seed: tuple[int, int, int], threshold: float, *, barrier: BoolMask, thick_axis: int) -> BoolMask:
    """The 6-connected component of ``crop ≥ threshold`` (holes filled) holding ``seed``; empty if none."""
    above = _fill_holes((crop >= threshold) & ~barrier, thick_axis) & ~barrier
    labels, _ = ndimage.label(above, structure=_SIX)
    value = labels[seed]
    return labels == value if value else np.zeros(crop.shape, bool)


class RegionGrowModel:
    """Connected-threshold region growing; the window is estimated around each click.

    The threshold lies halfway between the click's neighbourhood (median within ``seed_mm``) and
    the crop's background level (its 30th percentile). Negative clicks are barriers: voxels within
    ``barrier_mm`` of one are excluded, and a region holding a negative click is re-grown above
    that click's intensity.
    """

    name = "region-grow"
    capabilities = frozenset({"click"})
    needs_weights = False
    description = "Connected-threshold region growing from the clicks (weight-free baseline)"

    def __init__(self, max_radius_mm: float = 60.0, seed_mm: float = 3.0, barrier_mm: float = 3.0) -> None:
        self.max_radius_mm, self.seed_mm, self.barrier_mm = max_radius_mm, seed_mm, barrier_mm

    @classmethod
    def requirements(cls) -> list[str]:
        return []

    def start(self, image: Volume) -> _RegionGrowSession:
        return _RegionGrowSession(image, self)


class _RegionGrowSession(LocalSession):
    model_name = "region-grow"

    def __init__(self, image: Volume, model: RegionGrowModel) -> None:
        self.model = model
        self.thick_axis = int(np.argmax(image.spacing))
        super().__init__(image)

    def _seed_mm(self) -> float:
        return max(self.model.seed_mm, 1.01 * min(self.spacing))

    def segment(self, click: Click) -> Region:
        box = crop_around(click.ijk, self.model.max_radius_mm, self.spacing, self.shape)
        crop = self.image.data[box]
        seed = tuple(c - s.start for c, s in zip(click.ijk, box))
        near = ball(box, click.ijk, self._seed_mm(), self.spacing)
        level, background = float(np.median(crop[near])), float(np.percentile(crop, 30))
        if level <= background:
            return Region(box, near)  # a click on dark tissue: nothing to grow, keep its neighbourhood
        threshold = background + 0.5 * (level - background)
        barrier = np.zeros(crop.shape, bool)
        for negative in self.negatives:
            barrier |= ball(box, negative.ijk, self.model.barrier_mm, self.spacing)
        mask = grow_from_seed(crop, seed, threshold, barrier=barrier, thick_axis=self.thick_axis)
        inside = [n for n in self.negatives if all(s.start <= v < s.stop for s, v in zip(box, n.ijk))]
        for negative in inside:
            local = tuple(v - s.start for v, s in zip(negative.ijk, box))
            if mask[local]:
                threshold = max(threshold, float(crop[local]) + 1e-3 * abs(float(crop[local])) + 1e-6)
                mask = grow_from_seed(crop, seed, threshold, barrier=barrier, thick_axis=self.thick_axis)
        if not mask.any():
            mask = near & ~barrier
        return Region(box, mask)

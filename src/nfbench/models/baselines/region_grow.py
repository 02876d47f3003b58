"""`region-grow`: connected-threshold region growing from each positive click.

Neurofibromas on T2 fat-suppressed MRI are brighter than everything around them except fluid and
a few organs, and large ones have a darker centre (the "target sign"). So the region is a lower
threshold only: every voxel brighter than a level between the lesion's and its surroundings',
6-connected to the click, with enclosed holes (the darker centre) filled. A target darker than its
surroundings (CSF in T1, a hypointense lesion) is grown on the inverted crop. Each positive click
grows its own region inside a crop of bounded physical size around it, grown to the target's
scale, so a click costs the same on a 4 M- or a 72 M-voxel scan.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.models.baselines.click_regions import (
    ClickRegionSession, Region, Surroundings, ball_in, clicks_in, like_click, own_side, single_voxel,
    target_level, to_local,
)
from nfbench.types import BoolMask, BoxSlices, Click

__all__ = ["RegionGrowModel", "grow_from_seed", "fill_holes"]

_SIX = ndimage.generate_binary_structure(3, 1)
FRACTIONS = (0.5, 0.65, 0.8)
"""Thresholds tried, as fractions of the way from the surroundings' level to the lesion's."""
RIM_STEPS = 3
"""Re-estimates of the level from a region's bright rim (a click in a darker centre): each step's
region may hold only part of the rim, so the estimate climbs it in a few steps."""


def fill_holes(mask: BoolMask, thick_axis: int) -> BoolMask:
    """``mask`` with its enclosed holes filled, in 3D and in every slice across ``thick_axis``.

    A hole is a 6-connected background component that does not touch the crop's border. The
    darker centre of a lesion a few thick slices deep is often open towards the neighbouring
    slice, so holes are also filled slice by slice (one labelling with in-plane connectivity only).
    """
    filled = mask.copy()
    in_plane = _SIX.copy()
    in_plane[tuple(0 if a == thick_axis else 1 for a in range(3))] = False
    in_plane[tuple(2 if a == thick_axis else 1 for a in range(3))] = False
    for structure, faces in ((_SIX, range(3)), (in_plane, [a for a in range(3) if a != thick_axis])):
        labels, n = ndimage.label(~filled, structure=structure)
        if n == 0:
            continue
        outside = np.zeros(n + 1, bool)
        for axis in faces:
            for end in (0, -1):
                outside[np.take(labels, end, axis=axis)] = True
        outside[0] = True  # label 0 is the mask itself
        filled |= ~outside[labels]
    return filled


def grow_from_seed(
    crop: np.ndarray,
    seed: tuple[int, int, int],
    threshold: float,
    *,
    ceiling: float = np.inf,
    barrier: BoolMask | None = None,
    thick_axis: int = 1,
) -> BoolMask:
    """The 6-connected component of ``threshold <= crop <= ceiling`` (holes filled, barrier removed)
    holding ``seed``.

    Empty when the seed is not in it (a barrier on the seed, or a seed darker than the threshold
    and not enclosed by brighter voxels).
    """
    above = (crop >= threshold) & (crop <= ceiling)
    if barrier is not None:
        above &= ~barrier
    filled = fill_holes(above, thick_axis)
    if barrier is not None:
        filled &= ~barrier
    if not filled[seed]:
        return np.zeros(crop.shape, bool)
    labels, _ = ndimage.label(filled, structure=_SIX)
    return labels == labels[seed]


def stable_threshold(
    crop: np.ndarray, seed: tuple[int, int, int], level: float, background: float, *, thick_axis: int, leak_ratio: float
) -> tuple[float, BoolMask]:
    """The lowest threshold of :data:`FRACTIONS` whose region does not leak; returns it and the region.

    A threshold leaks when raising it to the next fraction shrinks the region more than
    ``leak_ratio`` times: a lesion has sharp edges, so its size barely depends on the threshold,
    while a bridge into skin, muscle or an organ disappears suddenly.
    """
    thresholds = [background + f * (level - background) for f in FRACTIONS]
    regions = [grow_from_seed(crop, seed, t, thick_axis=thick_axis) for t in thresholds]
    sizes = [np.count_nonzero(r) for r in regions]
    for n in range(len(regions) - 1):
        if sizes[n] and (sizes[n + 1] == 0 or sizes[n] <= leak_ratio * sizes[n + 1]):
            return thresholds[n], regions[n]
    best = max(range(len(regions)), key=lambda n: (sizes[n] > 0, n))
    return thresholds[best], regions[best]


class RegionGrowModel:
    """Connected-threshold region growing from each positive click (weight-free baseline).

    Per positive click, in a crop that starts at ``start_mm`` around it and doubles up to
    ``max_radius_mm`` while the region touches its side (unless the region then spreads more than
    ``spread`` times: see :meth:`~nfbench.models.baselines.click_regions.ClickRegionSession.at_scale`):
    the lesion level is the clicked voxel or the 75th percentile of its ``seed_mm`` neighbourhood,
    whichever is brighter; the surroundings' level is the 30th percentile of the ``max_radius_mm``
    crop; the threshold is the lowest of 50, 65 and 80 % of the way between them that does not
    leak (see :func:`stable_threshold`). A target darker than its surroundings is grown on the
    inverted crop (T1 CSF, hypointense lesions). When the click sat in a darker centre, the level
    is re-estimated from the region's bright rim.

    Negative clicks: a negative click on a voxel of a region that is at least as bright as the
    threshold raises the threshold above it (the bright structure it marks drops out, unless that
    would drop the clicked lesion too), and one brighter than the target caps the range halfway
    between the two; every negative click is also a barrier that no region enters or crosses: everything
    past the midway plane between it and the positive click
    (:func:`~nfbench.models.baselines.click_regions.own_side`), and the
    voxels of its ``barrier_mm`` ball within a quarter of the lesion-to-surroundings contrast of the
    clicked voxel's intensity (so a click on a dark fringe does not bite into the lesion). A negative click on the positive click
    itself therefore empties that click's region.
    """

    name = "region-grow"
    capabilities = frozenset({"click"})
    needs_weights = False
    description = "Connected-threshold region growing from the clicks (weight-free baseline)"

    def __init__(
        self,
        max_radius_mm: float = 60.0,
        seed_mm: float = 3.0,
        barrier_mm: float = 3.0,
        leak_ratio: float = 1.5,
        start_mm: float = 15.0,
        spread: float = 4.0,
    ) -> None:
        for option, value in (("max_radius_mm", max_radius_mm), ("seed_mm", seed_mm), ("barrier_mm", barrier_mm),
                              ("start_mm", start_mm)):
            if value <= 0:
                raise ValueError(f"region-grow option {option} must be positive, got {value}")
        for option, value in (("leak_ratio", leak_ratio), ("spread", spread)):
            if value <= 1:
                raise ValueError(f"region-grow option {option} must be > 1, got {value}")
        self.max_radius_mm, self.seed_mm, self.barrier_mm = max_radius_mm, seed_mm, barrier_mm
        self.leak_ratio, self.start_mm, self.spread = leak_ratio, start_mm, spread

    @classmethod
    def requirements(cls) -> list[str]:
        return []

    def start(self, image: Volume, *, seed: int = 0) -> _RegionGrowSession:
        """One case's session; ``seed`` is unused (the model is deterministic)."""
        return _RegionGrowSession(image, self)


class _RegionGrowSession(ClickRegionSession):
    model_name = "region-grow"

    def __init__(self, image: Volume, model: RegionGrowModel) -> None:
        self.model = model
        self.influence_mm = model.barrier_mm
        self.thick_axis = int(np.argmax(image.spacing))
        self.near_mm = max(model.seed_mm, 1.01 * min(image.spacing))
        super().__init__(image)

    def segment(self, click: Click) -> Region:
        model = self.model
        return self.at_scale(click, model.start_mm, model.max_radius_mm, self.near_mm, spread=model.spread)

    def segment_in(self, box: BoxSlices, click: Click, around: Surroundings) -> Region | None:
        model, axis = self.model, self.thick_axis
        crop = self.oriented(self.image.data[box], around.sign)
        seed = to_local(box, click.ijk)
        near = ball_in(box, click.ijk, self.near_mm, self.spacing)
        level, background = target_level(crop, seed, near), around.background
        if level <= background:  # a click on tissue no brighter than its surroundings
            return None
        threshold, region = stable_threshold(crop, seed, level, background, thick_axis=axis, leak_ratio=model.leak_ratio)
        top = level
        for _ in range(RIM_STEPS):  # clicked in a darker centre: the rim tells the lesion's level
            rim = float(np.percentile(crop[region], 90)) if region.any() else top
            if rim <= 1.15 * top:
                break
            retry = stable_threshold(crop, seed, rim, background, thick_axis=axis, leak_ratio=model.leak_ratio)
            if not retry[1].any():
                break
            (threshold, region), top = retry, rim
        negatives = self.negatives_in(box)
        if not negatives:
            return Region(box, region if region.any() else single_voxel(crop.shape, seed))
        barrier = ~own_side(box, click, negatives, self.spacing)
        for negative in clicks_in(box, negatives):
            barrier |= like_click(crop, box, negative, model.barrier_mm, self.spacing, 0.25 * (level - background))
        if not any(n.ijk == click.ijk for n in negatives):
            barrier[seed] = False  # only a negative click on this very voxel erases the clicked lesion
        inside = sorted(
            (float(crop[local]), local)
            for local in (to_local(box, n.ijk) for n in negatives)
            if all(0 <= v < s for v, s in zip(local, crop.shape)) and region[local]
        )
        ceiling = np.inf
        for value, _ in inside:
            if value >= threshold:
                raised = np.nextafter(np.float32(value), np.float32(np.inf))
                if grow_from_seed(crop, seed, raised, ceiling=ceiling, thick_axis=axis).any():
                    threshold = float(raised)
                elif value > top:  # brighter than the target itself: an upper bound of its range
                    lowered = 0.5 * (top + value)
                    if grow_from_seed(crop, seed, threshold, ceiling=lowered, thick_axis=axis).any():
                        ceiling = min(ceiling, lowered)
        return Region(box, grow_from_seed(crop, seed, threshold, ceiling=ceiling, barrier=barrier, thick_axis=axis))

"""What the weight-free baselines share: a session that segments one bounded region per positive click.

Each positive click owns one region (a box and a bool mask inside it) computed by the model from a
crop of bounded physical size around the click (:func:`~nfbench.models.blocks.grids.box_around`,
grown to the target's scale by :meth:`ClickRegionSession.at_scale`);
negative clicks make the model recompute the regions they can reach. The session keeps only the
regions, never a full-size mask: :meth:`predict` answers with a
:class:`~nfbench.models.base.Prediction` of the box that changed since the last answer, so a click
costs work proportional to its crop, not to the volume. (Several clicks far apart between two
answers give one box around all their regions: the contract has one box per answer.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nfbench.bbox import union_bbox
from nfbench.io.volume import Volume
from nfbench.models.base import Prediction
from nfbench.models.blocks.encodings import ball
from nfbench.models.blocks.grids import box_around
from nfbench.types import BoolMask, Box, BoxSlices, Click

__all__ = [
    "Region", "ClickRegionSession", "ball_in", "clicks_in", "to_local", "target_level", "Surroundings",
    "like_click", "single_voxel", "polarity", "own_side", "touches_inner_side", "relative", "overlap",
    "NOTHING_CHANGED",
]

NOTHING_CHANGED = Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0), slice(0, 0), slice(0, 0)))
"""The answer of a session whose mask did not change since its last answer."""


@dataclass(frozen=True)
class Region:
    """The mask one positive click produced; ``mask`` has the shape of ``box``."""

    box: BoxSlices
    mask: BoolMask


def to_local(box: BoxSlices, ijk: tuple[int, int, int]) -> tuple[int, int, int]:
    """A global voxel index as an index into the crop ``box``."""
    return tuple(v - s.start for v, s in zip(ijk, box))  # type: ignore[return-value]


def ball_in(box: BoxSlices, centre: tuple[int, int, int], radius_mm: float, spacing) -> BoolMask:
    """Voxels of ``box`` within ``radius_mm`` of the global voxel ``centre`` (anisotropic spacing)."""
    return ball(tuple(s.stop - s.start for s in box), to_local(box, centre), radius_mm, spacing)


def single_voxel(shape: tuple[int, ...], index: tuple[int, int, int]) -> BoolMask:
    """A mask of ``shape`` holding one voxel: what a baseline keeps when it finds nothing to follow."""
    mask = np.zeros(shape, bool)
    mask[index] = True
    return mask


def clicks_in(box: BoxSlices, clicks: list[Click], margin: tuple[int, int, int] = (0, 0, 0)) -> list[Click]:
    """The clicks that fall in ``box`` grown by ``margin`` voxels (a barrier ball may reach in)."""
    return [c for c in clicks if all(s.start - m <= v < s.stop + m for s, v, m in zip(box, c.ijk, margin))]


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile`` in float64: its interpolation subtracts neighbouring values, which overflows
    float32 for intensities beyond ±1.7e38 (and gives NaN thresholds)."""
    return float(np.percentile(values.astype(np.float64, copy=False), q))


def target_level(crop: np.ndarray, seed: tuple[int, int, int], near: BoolMask) -> float:
    """The lesion level at a positive click: the larger of the clicked voxel and the 75th
    percentile of its small neighbourhood ``near``.

    A median would be dragged down by the background around a lesion of a few voxels, while the
    clicked voxel alone is at the mercy of noise. A click in the darker centre of a "target sign"
    lesion gives a lower lesion level; the thresholds derived from it then still hold the bright rim.
    """
    return max(float(crop[seed]), percentile(crop[near], 75))


@dataclass(frozen=True)
class Surroundings:
    """What a positive click's target stands out from, read once from the largest crop around it,
    so that every crop size of :meth:`ClickRegionSession.at_scale` works with the same levels (a
    small crop inside a large lesion would otherwise see only lesion)."""

    sign: int  # +1: the target is brighter than its surroundings; -1: darker (followed inverted)
    background: float  # 30th percentile of the oriented crop: mostly fat, muscle or air around a lesion


def own_side(box: BoxSlices, click: Click, negatives: list[Click], spacing) -> BoolMask:
    """Voxels of ``box`` strictly closer (in mm) to ``click`` than to every negative click.

    A negative click is a barrier: the region of a positive click never reaches past the midway
    plane between the two, however the intensities connect them, so a click on a touching bright
    structure cuts it off instead of only removing the voxels around it.
    """
    grids = np.ogrid[tuple(slice(s.start, s.stop) for s in box)]

    def dist2(ijk: tuple[int, int, int]) -> np.ndarray:
        return sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, ijk, spacing))  # type: ignore[return-value]

    own = dist2(click.ijk)
    keep = np.ones(tuple(s.stop - s.start for s in box), bool)
    for negative in negatives:
        keep &= own < dist2(negative.ijk)
    return keep


def touches_inner_side(region: Region, box: BoxSlices, shape: tuple[int, ...]) -> bool:
    """Whether ``region`` reaches a side of the crop ``box`` that is not a side of the image."""
    if not region.mask.any():
        return False
    for axis, (inner, outer) in enumerate(zip(region.box, box)):
        if inner.start == outer.start != 0 and np.take(region.mask, 0, axis=axis).any():
            return True
        if inner.stop == outer.stop != shape[axis] and np.take(region.mask, -1, axis=axis).any():
            return True
    return False


def polarity(crop: np.ndarray, seed: tuple[int, int, int], near: BoolMask) -> int:
    """+1 when the clicked target stands out of the crop brighter than it, -1 when darker.

    The positive click says what the target looks like and the crop around it what surrounds it:
    CSF in T1 or a hypointense lesion is darker than its surroundings, a neurofibroma on STIR
    brighter. The target is what departs most from the crop's median: the brighter of the clicked
    voxel and the 75th percentile of its neighbourhood ``near``, or the darker of the voxel and the
    25th percentile (a small lesion fills only part of ``near``).
    """
    middle = float(np.median(crop.astype(np.float64, copy=False)))  # float32 overflows averaging two values near ±3e38
    up = max(float(crop[seed]), percentile(crop[near], 75)) - middle
    down = middle - min(float(crop[seed]), percentile(crop[near], 25))
    return 1 if up >= down else -1


def like_click(crop: np.ndarray, box: BoxSlices, click: Click, radius_mm: float, spacing, tolerance: float) -> BoolMask:
    """The voxels of ``click``'s ball that look like the clicked voxel (within ``tolerance``).

    A negative click on a thin false-positive fringe next to a lesion must not take the lesion
    voxels of its ball with it, and one on a bright neighbour must not take the darker lesion.
    """
    local = to_local(box, click.ijk)
    near = ball_in(box, click.ijk, radius_mm, spacing) & (np.abs(crop - float(crop[local])) <= tolerance)  # no int wrap
    near[local] = True
    return near


def relative(inner: BoxSlices, outer: BoxSlices) -> BoxSlices:
    """``inner`` as slices into a crop ``outer`` that holds it."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))  # type: ignore[return-value]


def overlap(a: BoxSlices, b: BoxSlices) -> BoxSlices | None:
    """The box that ``a`` and ``b`` share, or None when they share no voxel."""
    inter = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return inter if all(s.stop > s.start for s in inter) else None  # type: ignore[return-value]


class ClickRegionSession:
    """Session of a click-region model; subclasses implement :meth:`segment`.

    ``influence_mm`` is how far from its voxel a negative click can change a region (a barrier
    ball's radius): a negative click re-segments only the regions whose box, grown by that much,
    holds it. Every region is computed from all positive and negative clicks so far, so the mask
    depends on the clicks, not on the order in which regions happened to be recomputed.
    """

    model_name = "click-regions"
    influence_mm = 0.0

    def __init__(self, image: Volume) -> None:
        self.image = image
        self._flip: float | None = None
        self._around: dict[tuple, Surroundings] = {}  # by click voxel and radii: the image's, kept across resets
        self.shape = image.shape
        self.spacing = image.spacing
        self.reset()

    def reset(self) -> None:
        self.positives: list[Click] = []
        self.negatives: list[Click] = []
        self.regions: list[Region] = []
        self._changed: BoxSlices | None = None  # since the last answer, which a reset empties

    def segment(self, click: Click) -> Region:
        """The region of one positive click, given the current negative clicks."""
        raise NotImplementedError

    def region_of(self, click: Click) -> Region:
        """:meth:`segment`'s region with the clicked voxel in it, unless a negative click is on
        that very voxel: whatever the intensities or the other clicks say, the user's click is
        obeyed where it was placed (the last word on a voxel clicked both ways is the negative's).
        """
        region = self.segment(click)
        local = to_local(region.box, click.ijk)
        keep = not any(n.ijk == click.ijk for n in self.negatives)
        if region.mask[local] == keep:
            return region
        mask = region.mask.copy()
        mask[local] = keep
        return replace(region, mask=mask)

    def at_scale(self, click: Click, start_mm: float, max_mm: float, near_mm: float, spread: float = np.inf) -> Region:
        """The region of :meth:`segment_in` in a crop that starts at ``start_mm`` around the click
        and doubles, up to ``max_mm``, while the region touches a side of the crop inside the image
        or nothing stands out of the crop (it lies inside a large target). The first crop is large
        enough to hold the negative clicks that the largest one holds. The target's polarity and
        surroundings come from the largest crop (:meth:`surroundings`, ``near_mm`` around the click).

        A region that still touches the larger crop and holds more than ``spread`` times the
        voxels it held in the smaller one is spreading through a network (the CSF spaces, a
        vessel tree), not ending at a target's edge: the smaller crop's region stands.
        """
        radius = min(start_mm, max_mm)
        for negative in clicks_in(box_around(click.ijk, max_mm, self.spacing, self.shape), self.negatives):
            # the crop holds every negative click of the largest one: each can raise a threshold
            offset = np.abs(np.subtract(negative.ijk, click.ijk)) * np.asarray(self.spacing)
            radius = min(max(radius, float(offset.max()) + max(self.spacing)), max_mm)
        around = self.surroundings(click, max_mm, near_mm)
        box = box_around(click.ijk, radius, self.spacing, self.shape)
        region = self.segment_in(box, click, around)
        while radius < max_mm and (region is None or touches_inner_side(region, box, self.shape)):
            radius = min(2 * radius, max_mm)
            box = box_around(click.ijk, radius, self.spacing, self.shape)
            larger = self.segment_in(box, click, around)
            if region is not None and larger is not None and touches_inner_side(larger, box, self.shape) and (
                np.count_nonzero(larger.mask) > spread * np.count_nonzero(region.mask)
            ):
                return region
            region = larger
        return self.nothing_found(box, click) if region is None else region

    def segment_in(self, box: BoxSlices, click: Click, around: Surroundings) -> Region | None:
        """The region of one positive click inside the crop ``box`` (models using :meth:`at_scale`),
        or None when the target does not stand out of ``around``."""
        raise NotImplementedError

    def nothing_found(self, box: BoxSlices, click: Click) -> Region:
        """The region when nothing stands out of the largest crop: the clicked voxel alone."""
        return Region(box, single_voxel(tuple(s.stop - s.start for s in box), to_local(box, click.ijk)))

    def surroundings(self, click: Click, radius_mm: float, near_mm: float) -> Surroundings:
        """The polarity (:func:`polarity`) and background level of ``click``'s target, from the
        crop of ``radius_mm`` around it; read once per clicked voxel (a negative click recomputes
        every region in its reach)."""
        key = (click.ijk, radius_mm, near_mm)
        if key not in self._around:
            self._around[key] = self._read_surroundings(click, radius_mm, near_mm)
        return self._around[key]

    def _read_surroundings(self, click: Click, radius_mm: float, near_mm: float) -> Surroundings:
        box = box_around(click.ijk, radius_mm, self.spacing, self.shape)
        crop = self.image.data[box]
        sign = polarity(crop, to_local(box, click.ijk), ball_in(box, click.ijk, near_mm, self.spacing))
        return Surroundings(sign, percentile(self.oriented(crop, sign), 30))

    def oriented(self, crop: np.ndarray, sign: int) -> np.ndarray:
        """``crop``, contrast-inverted for a dark target (``sign`` -1), so that the models always
        follow a bright target.

        The inversion maps the image's range onto itself (``max + min - x``), so intensity ratios
        stay comparable between a bright target and a dark one of the same contrast.
        """
        if sign > 0:
            return crop
        if self._flip is None:  # once per case, and only for a dark target
            self._flip = float(np.max(self.image.data)) + float(np.min(self.image.data))
        return (self._flip - crop).astype(crop.dtype, copy=False)

    def negatives_in(self, box: BoxSlices) -> list[Click]:
        """The negative clicks that can affect a region in ``box``."""
        return clicks_in(box, self.negatives, self._margin())

    def _margin(self) -> tuple[int, int, int]:
        return tuple(int(np.ceil(self.influence_mm / sp)) for sp in self.spacing)  # type: ignore[return-value]

    def add_click(self, click: Click) -> None:
        if any(not 0 <= v < n for v, n in zip(click.ijk, self.shape)):
            raise ValueError(f"click {click.ijk} is outside the image of shape {self.shape}")
        if click.positive:
            self.positives.append(click)
            self.regions.append(self.region_of(click))
            self._changed = union_bbox(self._changed, self.regions[-1].box)
            return
        self.negatives.append(click)
        for n, region in enumerate(self.regions):
            if clicks_in(region.box, [click], self._margin()):
                self.regions[n] = self.region_of(self.positives[n])
                self._changed = union_bbox(self._changed, region.box, self.regions[n].box)

    def add_box(self, box: Box) -> None:
        raise NotImplementedError(f"model {self.model_name!r} takes clicks only, not boxes (no 'box' capability)")

    def paint(self, box: BoxSlices) -> BoolMask:
        """The union of every region inside ``box`` (a new array of the box's shape)."""
        out = np.zeros(tuple(s.stop - s.start for s in box), bool)
        for region in self.regions:
            inter = overlap(box, region.box)
            if inter is not None:
                out[relative(inter, box)] |= region.mask[relative(inter, region.box)]
        return out

    def predict(self) -> Prediction:
        """The mask inside the box that changed since the last answer (the engine keeps the rest)."""
        box, self._changed = self._changed, None
        return NOTHING_CHANGED if box is None else Prediction(self.paint(box), box)

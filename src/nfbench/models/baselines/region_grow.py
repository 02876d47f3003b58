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

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.models.baselines.click_regions import (
    ClickRegionSession, Region, Surroundings, ball_in, clicks_in, like_click, own_side, single_voxel,
    overlap, percentile, relative, target_level, to_local,
)
from nfbench.models.blocks.encodings import ball
from nfbench.types import BoolMask, BoxSlices, Click

__all__ = ["RegionGrowModel", "grow_from_seed", "fill_holes"]

_SIX = ndimage.generate_binary_structure(3, 1)
FRACTIONS = (0.5, 0.65, 0.8)
"""Thresholds tried, as fractions of the way from the surroundings' level to the lesion's."""
GROWN_CACHE_BYTES = 64 * 2**20
"""Memory per case for the regions :meth:`_RegionGrowSession.grown` remembers (bit-packed)."""
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


def object_thresholds(level: float, background: float) -> list[float]:
    """The thresholds tried for a target of ``level`` in surroundings of ``background`` (:data:`FRACTIONS`)."""
    return [background + f * (level - background) for f in FRACTIONS]


def stable_threshold(
    crop: np.ndarray, seed: tuple[int, int, int], thresholds: list[float], *, thick_axis: int, leak_ratio: float,
    grow: Callable[[float], BoolMask] | None = None,
) -> tuple[float, BoolMask]:
    """The lowest of the ascending ``thresholds`` whose region does not leak; returns it and the region.

    A threshold leaks when raising it to the next one shrinks the region more than
    ``leak_ratio`` times: a lesion has sharp edges, so its size barely depends on the threshold,
    while a bridge into skin, muscle or an organ disappears suddenly. ``grow`` (threshold → region)
    stands for :func:`grow_from_seed` on ``crop`` from ``seed`` (a session's remembered regions).
    """
    if grow is None:
        def grow(t: float) -> BoolMask:
            return grow_from_seed(crop, seed, t, thick_axis=thick_axis)
    regions = [grow(t) for t in thresholds]
    sizes = [np.count_nonzero(r) for r in regions]
    for n in range(len(regions) - 1):
        if sizes[n] and (sizes[n + 1] == 0 or sizes[n] <= leak_ratio * sizes[n + 1]):
            return thresholds[n], regions[n]
    best = max(range(len(regions)), key=lambda n: (sizes[n] > 0, n))
    return thresholds[best], regions[best]


@dataclass(frozen=True)
class GrownRegion(Region):
    """A region with the levels that grew it, so that a later click on its fringe extends it."""

    sign: int  # the polarity its crop was followed in (see Surroundings)
    background: float
    top: float  # the lesion level its thresholds came from
    threshold: float


class GrownCache:
    """Least-recently-used bool masks by key, bit-packed, at most ``capacity`` bytes packed (0: none kept).

    A negative click recomputes every region in its reach from all the clicks, and most of that
    work is the same connected-threshold growths as before (the same crop, seed and levels): only
    the barrier of the negative clicks is new. Remembering them spares most of a region's ten-odd
    growths (a negative click on a lesion with 50 clicks: 2.4–3.6× faster), with the same masks.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self.items: OrderedDict[object, tuple[tuple[int, ...], np.ndarray]] = OrderedDict()
        self.size = 0

    def get(self, key: object, compute: Callable[[], BoolMask]) -> BoolMask:
        if key in self.items:
            self.items.move_to_end(key)
            shape, bits = self.items[key]
            mask = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).view(bool)
        else:
            mask = compute()
            bits = np.packbits(mask)
            if bits.nbytes <= self.capacity:
                self.items[key] = (mask.shape, bits)
                self.size += bits.nbytes
                while self.size > self.capacity:
                    self.size -= self.items.popitem(last=False)[1][1].nbytes
        mask.flags.writeable = False  # shared by every caller of the same key
        return mask



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

    A positive click dimmer than an earlier click's threshold whose own region at the clicked
    intensity reaches or touches that click's region (one of at least ``seed_mm``'s ball) marks more
    of that object (a corrective click on its missed, dim rim): it takes that object's levels
    instead of its own, which would lie near the surroundings' and leak into them
    (:meth:`~_RegionGrowSession.extended_region`, :meth:`~_RegionGrowSession.extend`).

    Negative clicks: a negative click on a voxel of a region that is at least as bright as the
    threshold raises the threshold above it (the bright structure it marks drops out, unless that
    would drop the clicked lesion too), and one brighter than the target caps the range halfway
    between the two. A negative click at least as bright as the final threshold or inside the region
    (a bridge of lesion-bright tissue, a brighter neighbour, a filled hole) is also a barrier that no
    region enters or crosses: everything past the midway plane between it and the positive click
    (:func:`~nfbench.models.baselines.click_regions.own_side`); one that the raised threshold
    excludes sets no plane, so a dimmer false-positive fringe one thick slice from the positive
    click goes without the lesion's slices behind it. Every negative click removes the
    voxels of its ``barrier_mm`` ball within a quarter of the lesion-to-surroundings contrast of the
    clicked voxel's intensity (so a click on a dark fringe does not bite into the lesion). A negative
    click on the positive click itself therefore empties that click's region.
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
        half = [int(self.near_mm // s) for s in image.spacing]
        self.near_voxels = int(ball([2 * h + 1 for h in half], half, self.near_mm, image.spacing).sum())
        self.grown_cache = GrownCache(GROWN_CACHE_BYTES)  # the image's regions: kept across resets
        super().__init__(image)

    def grown(
        self, crop: np.ndarray, box: BoxSlices, sign: int, seed: tuple[int, int, int], threshold: float,
        ceiling: float = np.inf,
    ) -> BoolMask:
        """:func:`grow_from_seed` without a barrier on ``crop`` (the image in ``box``, oriented by
        ``sign``), remembered for the case (:class:`GrownCache`; read-only).

        The levels' types are part of the key: NumPy compares a float32 crop with a Python float
        in float32 and with a NumPy float64 in float64.
        """
        key = (tuple((s.start, s.stop) for s in box), sign, seed, type(threshold), float(threshold),
               type(ceiling), float(ceiling))
        return self.grown_cache.get(key, lambda: grow_from_seed(crop, seed, threshold, ceiling=ceiling,
                                                                thick_axis=self.thick_axis))

    def segment(self, click: Click) -> Region:
        model = self.model
        return self.at_scale(click, model.start_mm, model.max_radius_mm, self.near_mm, spread=model.spread)

    def segment_in(self, box: BoxSlices, click: Click, around: Surroundings) -> Region | None:
        crop = self.oriented(self.image.data[box], around.sign)
        seed = to_local(box, click.ijk)
        joined = self.extended_region(box, crop, click, around.sign)
        if joined is None:
            found = self.grow(crop, box, click, around)
            if found is None:
                return None
        else:
            found = self.extend(crop, box, seed, joined)
            if found is None:  # the object would leak: the clicked voxel alone, unless a negative click is on it
                erased = any(n.ijk == click.ijk for n in self.negatives)
                alone = np.zeros(crop.shape, bool) if erased else single_voxel(crop.shape, seed)
                return replace(joined, box=box, mask=alone)
        negatives = self.negatives_in(box)
        if negatives:
            return self.respect_negatives(crop, click, negatives, found)
        return found if found.mask.any() else replace(found, mask=single_voxel(crop.shape, seed))

    def grow(self, crop: np.ndarray, box: BoxSlices, click: Click, around: Surroundings) -> GrownRegion | None:
        """The region of a click that starts an object of its own, with the levels that grew it."""
        model, axis, seed, background = self.model, self.thick_axis, to_local(box, click.ijk), around.background
        level = target_level(crop, seed, ball_in(box, click.ijk, self.near_mm, self.spacing))
        if level <= background:  # a click on tissue no brighter than its surroundings
            return None
        grow = partial(self.grown, crop, box, around.sign, seed)
        threshold, region = stable_threshold(crop, seed, object_thresholds(level, background), thick_axis=axis,
                                             leak_ratio=model.leak_ratio, grow=grow)
        top = level
        for _ in range(RIM_STEPS):  # clicked in a darker centre: the rim tells the lesion's level
            rim = percentile(crop[region], 90) if region.any() else top
            if rim <= 1.15 * top:
                break
            retry = stable_threshold(crop, seed, object_thresholds(rim, background), thick_axis=axis,
                                     leak_ratio=model.leak_ratio, grow=grow)
            if not retry[1].any():
                break
            (threshold, region), top = retry, rim
        return GrownRegion(box, region, around.sign, background, top, threshold)

    def extended_region(self, box: BoxSlices, crop: np.ndarray, click: Click, sign: int) -> GrownRegion | None:
        """The earlier region that ``click`` joins while dimmer than its threshold: the click marks
        more of that object, not a new one.

        The click joins a region that its own region at the clicked intensity (voxels at least as
        bright as it, 6-connected to it, inside ``box``) reaches or touches. Such a click sits on
        the object's dim fringe (a corrective click in the missed rim), where a level of its own
        would be close to the surroundings' and its region would leak into them. A region smaller
        than a click's neighbourhood ball (``seed_mm``) is not joined: its thresholds did not find
        its object (a first click's region of two voxels would capture every dimmer click of the
        lesions around it). Only earlier clicks' regions count, and a negative click recomputes
        regions in click order, so an extended object is always read after its own update.
        """
        position = next(n for n, p in enumerate(self.positives) if p is click)
        seed = to_local(box, click.ijk)
        value = float(crop[seed])
        reach: BoolMask | None = None
        for region in self.regions[:position]:
            if not isinstance(region, GrownRegion) or region.sign != sign or value >= region.threshold:
                continue
            inter = overlap(box, region.box)
            if inter is None or np.count_nonzero(region.mask) < self.near_voxels:
                continue
            if reach is None:
                reach = ndimage.binary_dilation(self.grown(crop, box, sign, seed, value), _SIX)
            if (reach[relative(inter, box)] & region.mask[relative(inter, region.box)]).any():
                return region
        return None

    def extend(
        self, crop: np.ndarray, box: BoxSlices, seed: tuple[int, int, int], joined: GrownRegion
    ) -> GrownRegion | None:
        """The object of ``joined`` grown to hold the clicked voxel, with the object's own levels.

        The thresholds tried are the object's (:data:`FRACTIONS` of the way from its surroundings to
        its level) that lie below the clicked voxel, and the clicked voxel's intensity, the highest
        that holds it; the lowest that does not leak wins (:func:`stable_threshold`). A voxel dimmer
        than all the object's thresholds is close to the surroundings: its intensity is the
        threshold, unless the region then holds more than ``spread`` times the object's voxels (it
        leaks): None.
        """
        model, value = self.model, float(crop[seed])
        below = [t for t in object_thresholds(joined.top, joined.background) if t < value]
        threshold, region = stable_threshold(crop, seed, [*below, value], thick_axis=self.thick_axis,
                                             leak_ratio=model.leak_ratio,
                                             grow=partial(self.grown, crop, box, joined.sign, seed))
        if not below and np.count_nonzero(region) > model.spread * np.count_nonzero(joined.mask):
            return None
        return replace(joined, box=box, mask=region, threshold=threshold)

    def respect_negatives(
        self, crop: np.ndarray, click: Click, negatives: list[Click], found: GrownRegion
    ) -> GrownRegion:
        """``found`` once the negative clicks in reach are obeyed (its threshold and mask).

        Intensity first: a negative click inside the region raises the threshold above its voxel
        (or, brighter than the target, caps the range). A negative click at least as bright as the
        final threshold (a bridge of lesion-bright tissue, a brighter neighbour) or still inside the
        region (a filled hole) also gets the midway-plane barrier of :func:`own_side`; one that the
        threshold excludes, a dimmer fringe, does not. Every negative click keeps its like-intensity ball.
        """
        model, axis, box = self.model, self.thick_axis, found.box
        seed, threshold, top, region = to_local(box, click.ijk), found.threshold, found.top, found.mask
        in_box = [(n, to_local(box, n.ijk)) for n in clicks_in(box, negatives)]
        ceiling = np.inf
        for value in sorted(float(crop[local]) for _, local in in_box if region[local]):
            if value >= threshold:
                raised = np.nextafter(np.float32(value), np.float32(np.inf))
                if self.grown(crop, box, found.sign, seed, raised, ceiling).any():
                    threshold = float(raised)
                elif value > top:  # brighter than the target itself: an upper bound of its range
                    lowered = 0.5 * (top + value)
                    if self.grown(crop, box, found.sign, seed, threshold, lowered).any():
                        ceiling = min(ceiling, lowered)
        kept = self.grown(crop, box, found.sign, seed, threshold, ceiling)
        excluded = [n for n, local in in_box if crop[local] < threshold and not kept[local]]
        barrier = ~own_side(box, click, [n for n in negatives if n not in excluded], self.spacing)
        for negative, _ in in_box:
            barrier |= like_click(crop, box, negative, model.barrier_mm, self.spacing, 0.25 * (top - found.background))
        if not any(n.ijk == click.ijk for n in negatives):
            barrier[seed] = False  # only a negative click on this very voxel erases the clicked lesion
        mask = grow_from_seed(crop, seed, threshold, ceiling=ceiling, barrier=barrier, thick_axis=axis)
        return replace(found, mask=mask, threshold=threshold)

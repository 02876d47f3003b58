"""`random-walker`: scikit-image's random walker (Grady 2006) around each positive click.

Intensity alone says which voxels are surely lesion (close to the click's level) and surely not
(much darker); the random walker decides the voxels in between by where the image's edges are,
and lets negative clicks cut a lesion off a bright neighbour of similar intensity (fluid, an
organ) that no threshold can separate.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker

from nfbench.bbox import mask_bbox
from nfbench.io.volume import Volume
from nfbench.models.baselines.click_regions import (
    ClickRegionSession, Region, Surroundings, ball_in, clicks_in, like_click, own_side, percentile, single_voxel,
    target_level, to_local,
)
from nfbench.models.baselines.region_grow import fill_holes, grow_from_seed, object_thresholds, stable_threshold
from nfbench.types import BoolMask, BoxSlices, Click

__all__ = ["RandomWalkerModel"]

_SIX = ndimage.generate_binary_structure(3, 1)


class RandomWalkerModel:
    """Random walker on the candidate region around each positive click (weight-free baseline).

    Per positive click, in a crop that starts at ``start_mm`` around it and doubles up to
    ``radius_mm`` while the result touches its side (unless it then spreads more than ``spread``
    times: see :meth:`~nfbench.models.baselines.click_regions.ClickRegionSession.at_scale`): with
    the lesion level of :func:`~nfbench.models.baselines.click_regions.target_level` and the
    surroundings' of :class:`~nfbench.models.baselines.click_regions.Surroundings`, the candidate is the region
    grown from the click above ``low`` of the way between them (holes filled), within ``band``
    voxels of the region-grow's non-leaking region (``leak_ratio``); when the candidate's 90th
    percentile is much brighter than the click and encloses it (a click in a darker centre), that
    bright rim becomes the lesion level. A target darker than its surroundings (CSF in T1, a hypointense
    lesion) is followed on the inverted crop (``oriented`` of
    :class:`~nfbench.models.baselines.click_regions.ClickRegionSession`).
    Seeds: lesion = the click, the core grown from it at least ``high`` of the way up (eroded by
    a voxel, so the walker decides the edges), and the other positive clicks in the candidate;
    background = everything outside the candidate (in its box grown by two voxels), everything
    past the midway plane to a negative click, and, at each negative click, the voxels of its
    ``seed_mm`` ball whose intensity is within a quarter of the lesion-to-surroundings contrast of
    the clicked voxel's. The walker
    (``beta``, conjugate gradient with Jacobi preconditioner, edges in voxel units) labels the rest;
    the result is the part connected to the click, holes filled. Boxes of more than
    ``max_voxels`` are subsampled in-plane, so one click stays well under a second.
    """

    name = "random-walker"
    capabilities = frozenset({"click"})
    needs_weights = False
    description = "scikit-image random walker around each click (weight-free baseline)"

    def __init__(
        self,
        radius_mm: float = 60.0,
        start_mm: float = 15.0,
        beta: float = 130.0,
        seed_mm: float = 3.0,
        low: float = 0.3,
        high: float = 0.6,
        max_voxels: int = 40_000,
        band: int = 2,
        leak_ratio: float = 1.5,
        spread: float = 4.0,
    ) -> None:
        for option, value in (("radius_mm", radius_mm), ("start_mm", start_mm), ("beta", beta), ("seed_mm", seed_mm),
                              ("max_voxels", max_voxels), ("band", band)):
            if value <= 0:
                raise ValueError(f"random-walker option {option} must be positive, got {value}")
        if not 0 < low < high < 1:
            raise ValueError(f"random-walker options need 0 < low < high < 1, got low={low}, high={high}")
        self.radius_mm, self.beta, self.seed_mm = radius_mm, beta, seed_mm
        for option, value in (("leak_ratio", leak_ratio), ("spread", spread)):
            if value <= 1:
                raise ValueError(f"random-walker option {option} must be > 1, got {value}")
        self.low, self.high, self.max_voxels = low, high, int(max_voxels)
        self.start_mm, self.band, self.leak_ratio, self.spread = start_mm, int(band), leak_ratio, spread

    @classmethod
    def requirements(cls) -> list[str]:
        return []

    def start(self, image: Volume, *, seed: int = 0) -> _RandomWalkerSession:
        """One case's session; ``seed`` is unused (the model is deterministic)."""
        return _RandomWalkerSession(image, self)


class _RandomWalkerSession(ClickRegionSession):
    model_name = "random-walker"

    def __init__(self, image: Volume, model: RandomWalkerModel) -> None:
        self.model = model
        self.influence_mm = model.seed_mm
        self.thick_axis = int(np.argmax(image.spacing))
        self.seed_mm = max(model.seed_mm, 1.01 * min(image.spacing))
        super().__init__(image)

    def segment(self, click: Click) -> Region:
        return self.at_scale(click, self.model.start_mm, self.model.radius_mm, self.seed_mm, spread=self.model.spread)

    def segment_in(self, box: BoxSlices, click: Click, around: Surroundings) -> Region | None:
        model, axis = self.model, self.thick_axis
        crop = self.oriented(self.image.data[box], around.sign)
        seed = to_local(box, click.ijk)
        level = target_level(crop, seed, ball_in(box, click.ijk, self.seed_mm, self.spacing))
        background = around.background
        if level <= background:  # nothing brighter than its surroundings to follow
            return None
        _, stable = stable_threshold(crop, seed, object_thresholds(level, background), thick_axis=axis,
                                     leak_ratio=model.leak_ratio)
        candidate = grow_from_seed(crop, seed, background + model.low * (level - background), thick_axis=axis)
        if stable.any():  # the target's scale: the band of uncertainty around its non-leaking region
            candidate &= ndimage.binary_dilation(stable, _SIX, iterations=model.band)
        if not candidate[seed]:
            candidate = single_voxel(crop.shape, seed)
        rim = percentile(crop[candidate], 90)
        bright = crop >= background + model.high * (rim - background)
        if rim > 1.15 * level and fill_holes(bright, axis)[seed] and not bright[seed]:
            level = rim  # clicked in a darker centre enclosed by a bright rim: scale by the rim
        margin = [1 if a == axis else 2 for a in range(3)]
        sub = tuple(
            slice(max(s.start - m, 0), min(s.stop + m, n))
            for s, m, n in zip(mask_bbox(candidate), margin, crop.shape)  # type: ignore[arg-type]
        )
        inner = tuple(slice(box[a].start + sub[a].start, box[a].start + sub[a].stop) for a in range(3))
        data = ((crop[sub].astype(np.float64) - background) / (level - background)).astype(np.float32)
        labels = np.where(candidate[sub], 0, 2).astype(np.uint8)
        core = grow_from_seed(data, to_local(inner, click.ijk), model.high, thick_axis=axis)
        labels[core & ndimage.binary_erosion(candidate[sub], _SIX)] = 1  # the sure core, off the background seeds
        for other in clicks_in(inner, self.positives):
            labels[to_local(inner, other.ijk)] = 1
        labels[to_local(inner, click.ijk)] = 1
        for negative in clicks_in(inner, self.negatives):
            labels[like_click(data, inner, negative, self.seed_mm, self.spacing, 0.25)] = 2
        labels[~own_side(inner, click, self.negatives_in(inner), self.spacing)] = 2  # past a negative click
        local = to_local(inner, click.ijk)
        if any(n.ijk == click.ijk for n in self.negatives):  # a negative click on this very voxel cancels it
            return Region(inner, np.zeros(labels.shape, bool))
        labels[local] = 1  # a negative click nearby never erases the clicked voxel
        lesion = self._walk(data, labels) if (labels == 0).any() else labels == 1
        components, _ = ndimage.label(lesion, structure=_SIX)
        lesion = components == components[local] if lesion[local] else single_voxel(lesion.shape, local)
        return Region(inner, fill_holes(lesion, axis) & (labels != 2))

    def _walk(self, data: np.ndarray, labels: np.ndarray) -> BoolMask:
        """Label 1 of the random walker, subsampled in-plane when the box is large."""
        step = [1, 1, 1]
        while np.prod([-(-n // s) for n, s in zip(data.shape, step)]) > self.model.max_voxels:
            for a in range(3):
                if a != self.thick_axis:
                    step[a] += 1
        grid = tuple(slice(None, None, s) for s in step)
        small_labels = labels[grid].copy()
        if not (small_labels == 1).any():  # the lesion seeds fell between the samples: keep one
            small_labels[tuple(v // s for v, s in zip(np.argwhere(labels == 1)[0], step))] = 1
        if not (small_labels == 0).any():
            return labels == 1
        with warnings.catch_warnings():
            # Probabilities slightly outside [0, 1] (solver tolerance) do not change the labels.
            warnings.filterwarnings("ignore", message="The probability range is outside")
            # Edges are weighted in voxel units on purpose: scikit-image divides each gradient by
            # the spacing but keeps every neighbour's coupling, so 7.8 mm slices next to 0.625 mm
            # pixels would couple ~12x too easily and background seeds one slice away would win.
            result = random_walker(data[grid], small_labels, beta=self.model.beta, mode="cg_j", tol=1e-3)
        lesion = result == 1
        if step != [1, 1, 1]:
            for a, s in enumerate(step):
                lesion = np.repeat(lesion, s, axis=a)
            lesion = lesion[tuple(slice(0, n) for n in data.shape)]
        return lesion

"""`random-walker`: scikit-image's random walker on a crop around each positive click."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker

from nfbench.io.volume import Volume
from nfbench.models._local import LocalSession, Region, ball, crop_around, robust_scale
from nfbench.types import Click

__all__ = ["RandomWalkerModel"]


class RandomWalkerModel:
    """Random walker (Grady 2006) in a box of ``radius_mm`` around each positive click.

    Seeds: lesion = a small ball at each positive click in the box; background = the box's border,
    voxels darker than a fifth of the way from the box's background level to the click's level,
    and a small ball at each negative click. The lesion is the connected part of the label-1
    region that holds the click. Boxes larger than ``max_voxels`` are downsampled in-plane.
    """

    name = "random-walker"
    capabilities = frozenset({"click"})
    needs_weights = False
    description = "scikit-image random walker on a crop around each click (weight-free baseline)"

    def __init__(self, radius_mm: float = 60.0, beta: float = 130.0, seed_mm: float = 3.0, max_voxels: int = 60_000) -> None:
        self.radius_mm, self.beta, self.seed_mm, self.max_voxels = radius_mm, beta, seed_mm, max_voxels

    @classmethod
    def requirements(cls) -> list[str]:
        return []

    def start(self, image: Volume) -> _RandomWalkerSession:
        return _RandomWalkerSession(image, self)


class _RandomWalkerSession(LocalSession):
    model_name = "random-walker"

    def __init__(self, image: Volume, model: RandomWalkerModel) -> None:
        self.model = model
        self.lo, self.hi = robust_scale(image.data)
        self.thick_axis = int(np.argmax(image.spacing))
        super().__init__(image)

    def segment(self, click: Click) -> Region:
        model = self.model
        box = crop_around(click.ijk, model.radius_mm, self.spacing, self.shape)
        crop = (self.image.data[box].astype(np.float32) - self.lo) / (self.hi - self.lo)
        seed_mm = max(model.seed_mm, 1.01 * min(self.spacing))
        near = ball(box, click.ijk, seed_mm, self.spacing)
        level, background = float(np.median(crop[near])), float(np.percentile(crop, 30))
        labels = np.zeros(crop.shape, np.uint8)
        border = np.ones(crop.shape, bool)
        border[tuple(slice(1, -1) if n > 2 and a != self.thick_axis else slice(None) for a, n in enumerate(crop.shape))] = False
        labels[border] = 2
        labels[crop < background + 0.2 * (level - background)] = 2
        for other in self.positives:
            if all(s.start <= v < s.stop for s, v in zip(box, other.ijk)):
                labels[ball(box, other.ijk, seed_mm, self.spacing)] = 1
        labels[near] = 1
        rejected = np.zeros(crop.shape, bool)
        for negative in self.negatives:
            if all(s.start <= v < s.stop for s, v in zip(box, negative.ijk)):
                rejected[tuple(v - s.start for v, s in zip(negative.ijk, box))] = True
        labels[rejected] = 2  # a negative click overrides everything, even the positive's own ball
        fallback = near & ~rejected
        factor = _downsample_factor(crop.shape, self.thick_axis, model.max_voxels)
        step = tuple(1 if a == self.thick_axis else factor for a in range(3))
        small = crop[tuple(slice(None, None, s) for s in step)]
        small_labels = labels[tuple(slice(None, None, s) for s in step)]
        spacing = tuple(sp * s for sp, s in zip(self.spacing, step))
        if not (small_labels == 0).any() or not (small_labels == 1).any():
            return Region(box, fallback)
        with warnings.catch_warnings():
            # Probabilities a little outside [0, 1] (solver tolerance) do not change the labels.
            warnings.filterwarnings("ignore", message="The probability range is outside")
            result = random_walker(small, small_labels, beta=model.beta, mode="cg_j", tol=1e-3, spacing=spacing)
        lesion = result == 1
        if factor > 1:
            lesion = _upsample(lesion, step, crop.shape)
        components, _ = ndimage.label(lesion)
        value = components[tuple(c - s.start for c, s in zip(click.ijk, box))]
        return Region(box, components == value if value else fallback)


def _downsample_factor(shape: tuple[int, ...], thick_axis: int, max_voxels: int) -> int:
    factor = 1
    while np.prod([n if a == thick_axis else -(-n // factor) for a, n in enumerate(shape)]) > max_voxels:
        factor += 1
    return factor


def _upsample(mask: np.ndarray, step: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    for axis, s in enumerate(step):
        mask = np.repeat(mask, s, axis=axis)
    return mask[tuple(slice(0, n) for n in shape)]

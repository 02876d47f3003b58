"""Training cases on a model's grid and the patches cut from them.

A case is loaded once, mapped to the model's grid (orientation, spacing, normalisation exactly as
the model's session does at evaluation) and kept in memory with its lesions' voxels, so a step
costs a crop, not a file read. Patches are centred on a lesion voxel with probability
``lesion_rate`` (the lesion drawn in proportion to voxels^0.25 or to √voxels, alternately, so
tiny and large lesions are both learned), otherwise on a random voxel of the body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nfbench.io.dataset import Case
from nfbench.io.volume import Volume, load_volume
from nfbench.lesions import instance_map
from nfbench.models.blocks.grids import cut, window_around

__all__ = ["GridCase", "Patch", "PatchSampler", "load_grid_case"]

Prepare = Callable[[Volume, Volume], tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]
"""``(image, label)`` → model-grid image (float32), instance label and the grid's spacing (mm)."""

_SIZE_POWERS = (0.25, 0.5)
_BODY_TRIES = 32


@dataclass(frozen=True)
class GridCase:
    """One case on a model's grid: image, instance label, spacing and each lesion's flat voxel indices."""

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    lesions: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Patch:
    """A training patch: the image crop, the binary lesion mask of the crop and its source."""

    image: np.ndarray
    truth: np.ndarray
    case: str
    centre: tuple[int, int, int]


def load_grid_case(case: Case, prepare: Prepare) -> GridCase:
    """Read a case's image and label and map both to the model's grid with ``prepare``."""
    if case.label is None:
        raise ValueError(f"{case.image}: training case {case.name!r} has no label")
    image, label = load_volume(case.image), load_volume(case.label)
    if image.shape != label.shape:
        raise ValueError(f"{case.label}: label shape {label.shape} differs from its image's {image.shape}")
    grid_image, grid_label, spacing = prepare(image, label)
    instances = instance_map(grid_label)
    flat = instances.ravel()
    where = np.flatnonzero(flat)
    ids = flat[where]
    order = np.argsort(ids, kind="stable")
    ids, where = ids[order], where[order]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    lesions = tuple(np.split(where, cuts)) if where.size else ()
    return GridCase(case.name, grid_image, instances, spacing, lesions)


class PatchSampler:
    """Draws patches of ``size`` voxels from cases, every draw from the generator it is given."""

    def __init__(self, cases: Sequence[GridCase], size: Sequence[int], *, lesion_rate: float = 0.6,
                 flip_rate: float = 0.0) -> None:
        if not cases:
            raise ValueError("no training case to draw patches from")
        if not 0 <= lesion_rate <= 1 or not 0 <= flip_rate <= 1:
            raise ValueError(f"lesion_rate and flip_rate must be in [0, 1], got {lesion_rate} and {flip_rate}")
        self.cases = list(cases)
        self.size = tuple(int(n) for n in size)
        self.lesion_rate = float(lesion_rate)
        self.flip_rate = float(flip_rate)
        self._draws = 0
        self._weights = {
            power: [np.array([len(v) for v in c.lesions], float) ** power for c in self.cases]
            for power in _SIZE_POWERS
        }

    def centre(self, rng: np.random.Generator) -> tuple[int, int]:
        """``(case index, flat voxel)`` of the next patch centre."""
        power = _SIZE_POWERS[self._draws % len(_SIZE_POWERS)]
        self._draws += 1
        with_lesions = [i for i, c in enumerate(self.cases) if c.lesions]
        if with_lesions and rng.random() < self.lesion_rate:
            index = int(with_lesions[rng.integers(len(with_lesions))])
            weights = self._weights[power][index]
            lesion = self.cases[index].lesions[int(rng.choice(len(weights), p=weights / weights.sum()))]
            return index, int(lesion[rng.integers(len(lesion))])
        index = int(rng.integers(len(self.cases)))
        image = self.cases[index].image.ravel()
        voxel = int(rng.integers(image.size))
        for _ in range(_BODY_TRIES):  # a voxel of the body, not of the air around it
            if image[voxel] != 0:
                break
            voxel = int(rng.integers(image.size))
        return index, voxel

    def draw(self, rng: np.random.Generator) -> Patch:
        """One patch, flipped along each axis with probability ``flip_rate``."""
        index, voxel = self.centre(rng)
        case = self.cases[index]
        centre = tuple(int(v) for v in np.unravel_index(voxel, case.image.shape))
        window = window_around(centre, self.size, case.image.shape)
        image, truth = cut(case.image, window), cut(case.label, window) > 0
        flips = [axis for axis in range(3) if rng.random() < self.flip_rate]
        if flips:
            image, truth = np.flip(image, flips), np.flip(truth, flips)
        return Patch(np.ascontiguousarray(image), np.ascontiguousarray(truth), case.name, centre)  # type: ignore[arg-type]

"""Training cases on a model's grid and the patches cut from them.

A case is loaded once, mapped to the model's grid (orientation, spacing, normalisation exactly as
the model's session does at evaluation) and kept in memory with its lesions' voxels, so a step
costs a crop, not a file read. Patches are centred on a lesion voxel with probability
``lesion_rate`` (a case with lesions drawn uniformly, then one of its lesions in proportion to
voxels^0.25 or to √voxels, alternately, so tiny and large lesions are both learned; a lesion of a
case with few lesions is drawn more often than one of a high-burden case), otherwise on a random
voxel of the body. For 2D video models a case is a stack of frames and :class:`ClipSampler` cuts clips of consecutive frames that
start on a lesion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nfbench.io.dataset import Case
from nfbench.io.volume import Volume, load_volume
from nfbench.lesions import instance_map
from nfbench.models.blocks.frames import FrameStack
from nfbench.models.blocks.grids import cut, window_around

__all__ = ["Clip", "ClipSampler", "GridCase", "Patch", "PatchSampler", "frame_case", "load_grid_case"]

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
    centred: np.ndarray
    """The mask of the one lesion under the patch centre (all False when the centre is not a lesion voxel)."""


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


def frame_case(image: Volume, label: Volume) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A case as the frame stack 2D video models see (:class:`FrameStack`): uint8 frames, label frames, mm per axis.

    The spacing is of (frame, row, column).
    """
    stack = FrameStack.of(image.shape, image.spacing)
    frames = stack.frames(np.asarray(image.data, np.float32))
    labels = np.stack([stack.frame(np.asarray(label.data), n) for n in range(stack.n_frames)])
    a, b = stack.in_plane
    return frames, labels, (float(image.spacing[stack.axis]), float(image.spacing[b]), float(image.spacing[a]))


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
        image, labels = cut(case.image, window), cut(case.label, window)
        lesion = case.label[centre]
        truth, centred = labels > 0, (labels == lesion) if lesion else np.zeros(labels.shape, bool)
        flips = [axis for axis in range(3) if rng.random() < self.flip_rate]
        if flips:
            image, truth, centred = np.flip(image, flips), np.flip(truth, flips), np.flip(centred, flips)
        return Patch(np.ascontiguousarray(image), np.ascontiguousarray(truth), case.name, centre,  # type: ignore[arg-type]
                     np.ascontiguousarray(centred))


@dataclass(frozen=True)
class Clip:
    """Consecutive frames ``(T, rows, columns)`` of one case, one lesion's masks on them, the first click."""

    frames: np.ndarray
    truth: np.ndarray
    click: tuple[int, int]
    """``(row, column)`` of the first click, a voxel of the lesion on the clip's first frame."""
    case: str
    indices: tuple[int, ...]
    """The frames' indices in the case (descending when the clip runs backwards)."""
    spacing: tuple[float, float, float]
    """mm between frames, rows and columns."""


class ClipSampler(PatchSampler):
    """Clips of ``frames`` consecutive frames from cases whose arrays are frame stacks ``(n, rows, columns)``.

    A lesion voxel is drawn as :meth:`PatchSampler.centre` draws patch centres on lesions (the
    case uniformly, then its lesion in proportion to voxels^0.25 or √voxels, alternately; then a voxel
    uniformly): it is the first click, and its frame the clip's first frame, so the click is uniform over the lesion on
    that frame (SAM2's training, ``get_next_point(method="uniform")``). The clip runs forwards or
    backwards (drawn, or the way that fits; shorter when neither does), as evaluation propagates
    both ways from a prompt; flipped left–right with probability ``flip_rate``.
    """

    def __init__(self, cases: Sequence[GridCase], frames: int, *, flip_rate: float = 0.0) -> None:
        if not any(c.lesions for c in cases):
            raise ValueError("no lesion in the cases to start a clip on")
        super().__init__(cases, (int(frames), 1, 1), lesion_rate=1.0, flip_rate=flip_rate)
        self.frames = int(frames)

    def draw(self, rng: np.random.Generator) -> Clip:  # type: ignore[override]
        index, voxel = self.centre(rng)
        case = self.cases[index]
        first, row, column = (int(v) for v in np.unravel_index(voxel, case.image.shape))
        n = case.image.shape[0]
        room = {1: n - first, -1: first + 1}  # frames available forwards and backwards
        step = 1 if rng.random() < 0.5 else -1
        if room[step] < self.frames and room[-step] > room[step]:
            step = -step
        indices = tuple(first + step * k for k in range(min(self.frames, room[step])))
        lesion = case.label.ravel()[voxel]
        frames, truth = case.image[list(indices)], case.label[list(indices)] == lesion
        if rng.random() < self.flip_rate:
            frames, truth, column = frames[:, :, ::-1], truth[:, :, ::-1], frames.shape[2] - 1 - column
        return Clip(np.ascontiguousarray(frames), np.ascontiguousarray(truth), (row, column), case.name, indices,
                    case.spacing)

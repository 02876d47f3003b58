"""A canonical volume as a stack of 2D frames, for 2D models (SAM2, LiteMedSAM, SimpleClick).

Frames follow the layout of ``nfbench data slice`` (:mod:`nfbench.io.slices`), so a model fine-tuned
on our sliced PNGs sees the same view at evaluation: frame ``n`` is index ``n`` along the thick-slice
axis ``k`` (coronal whole-body MRI: frame 0 is the most posterior slice), and of the other axes
``a < b``, ``pixel[row, col] = volume[a = A-1-col, b = B-1-row]`` (coronal: head up, patient's right on
the image's left). Intensities are the 0.5–99.5 percentile window of the non-zero voxels mapped to
0–255, the same 8-bit values the sliced PNGs hold. Every mapping between voxels and pixels of a
model goes through :class:`FrameStack`, so the layout is pinned in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nfbench.bbox import union_bbox
from nfbench.io.slices import PERCENTILES, display_plane, intensity_window, slice_axis, to_uint8
from nfbench.models.base import Prediction
from nfbench.types import BoolMask, BoxSlices

__all__ = ["FrameAnswer", "FrameStack", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The normalisation SAM2 trains and evaluates with, on 0–1 RGB."""


@dataclass(frozen=True)
class FrameStack:
    """How a volume of ``shape`` is cut into frames along ``axis``; pixels ↔ voxels both ways."""

    shape: tuple[int, int, int]
    axis: int

    @classmethod
    def of(cls, shape: Sequence[int], spacing: Sequence[float], axis: int | None = None) -> FrameStack:
        """Frames along ``axis`` (default: the thick-slice axis of ``spacing``, as ``nfbench data slice``)."""
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3:
            raise ValueError(f"frames need a 3D volume, got shape {shape}")
        return cls(shape, slice_axis(tuple(float(s) for s in spacing)) if axis is None else int(axis))  # type: ignore[arg-type]

    @property
    def in_plane(self) -> tuple[int, int]:
        """The canonical axes ``(a, b)`` of a frame's columns and rows."""
        a, b = (axis for axis in range(3) if axis != self.axis)
        return a, b

    @property
    def n_frames(self) -> int:
        return self.shape[self.axis]

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of every frame."""
        a, b = self.in_plane
        return self.shape[b], self.shape[a]

    def frames(self, image: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
        """All frames as uint8 ``(n_frames, rows, columns)``, windowed over the whole volume."""
        if image.shape != self.shape:
            raise ValueError(f"image shape {image.shape} is not the frame stack's {self.shape}")
        window = intensity_window(image, percentiles)
        return np.stack([to_uint8(display_plane(image, self.axis, n), window) for n in range(self.n_frames)])

    def frame(self, volume: np.ndarray, n: int) -> np.ndarray:
        """Frame ``n`` of any array of the volume's shape (a mask, a label), in the frame layout."""
        return display_plane(volume, self.axis, n)

    def pixel(self, ijk: Sequence[int]) -> tuple[int, int, int]:
        """``(frame, row, column)`` of a voxel."""
        a, b = self.in_plane
        return int(ijk[self.axis]), self.shape[b] - 1 - int(ijk[b]), self.shape[a] - 1 - int(ijk[a])

    def voxel(self, frame: int, row: int, column: int) -> tuple[int, int, int]:
        """The voxel of a pixel of frame ``frame`` (inverse of :meth:`pixel`)."""
        a, b = self.in_plane
        ijk = [0, 0, 0]
        ijk[self.axis], ijk[b], ijk[a] = int(frame), self.shape[b] - 1 - int(row), self.shape[a] - 1 - int(column)
        return ijk[0], ijk[1], ijk[2]

    def to_volume(self, masks: np.ndarray) -> BoolMask:
        """Per-frame masks ``(n_frames, rows, columns)`` as a volume mask."""
        if masks.shape != (self.n_frames, *self.frame_shape):
            raise ValueError(f"masks of shape {masks.shape} do not fit frames {(self.n_frames, *self.frame_shape)}")
        planes = masks[:, ::-1, ::-1].transpose(0, 2, 1)  # (n, A, B): plane[a, b] = mask[B-1-b, A-1-a]
        return np.ascontiguousarray(np.moveaxis(planes, 0, self.axis)).astype(bool, copy=False)

    def box(self, ijk_min: Sequence[int], ijk_max: Sequence[int]) -> tuple[int, int, int, int]:
        """The in-plane box ``(col0, row0, col1, row1)`` (inclusive) of voxel bounds, SAM's (x, y) order."""
        _, r0, c0 = self.pixel(ijk_max)
        _, r1, c1 = self.pixel(ijk_min)
        return c0, r0, c1, r1


class FrameAnswer:
    """An object's per-frame masks as the engine's :class:`Prediction`: the box that holds them, grown
    to the box answered before so that voxels the object left are cleared, never the whole volume."""

    def __init__(self, stack: FrameStack) -> None:
        self.stack = stack
        self.reset()

    def reset(self) -> None:
        """A new object: nothing answered yet."""
        self._box: BoxSlices | None = None

    def __call__(self, masks: Mapping[int, np.ndarray]) -> Prediction:
        """The answer for ``masks`` (frame -> bool ``(rows, columns)``; frames left out are empty)."""
        stack = self.stack
        masks = {frame: mask for frame, mask in masks.items() if mask.any()}
        box = mask = None
        if masks:
            frames = sorted(masks)
            planes = np.zeros((frames[-1] - frames[0] + 1, *stack.frame_shape), bool)
            for frame in frames:
                planes[frame - frames[0]] = masks[frame]
            rows, columns = np.flatnonzero(planes.any(axis=(0, 2))), np.flatnonzero(planes.any(axis=(0, 1)))
            crop = planes[:, rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
            lo = stack.voxel(frames[0], rows[-1], columns[-1])
            hi = stack.voxel(frames[-1], rows[0], columns[0])
            box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
            mask = FrameStack(tuple(s.stop - s.start for s in box), stack.axis).to_volume(crop)  # type: ignore[arg-type]
        whole = union_bbox(box, self._box)
        self._box = box
        if whole is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3)  # type: ignore[arg-type]
        if whole == box:
            return Prediction(mask, box)  # type: ignore[arg-type]
        out = np.zeros(tuple(s.stop - s.start for s in whole), bool)
        if box is not None:
            out[tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, whole))] = mask
        return Prediction(out, whole)  # type: ignore[arg-type]

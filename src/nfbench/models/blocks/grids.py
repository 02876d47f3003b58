"""The native grid and a model's grid: orientation, resampling, fixed-size windows, and back.

The native grid is the canonical RAS+ grid of a loaded :class:`~nfbench.io.volume.Volume`
(axis 0 → patient's right, 1 → anterior, 2 → superior, spacing ``Volume.spacing``). A model sees
a crop of it, in its own axis order and directions (axis codes such as ``"LPS"``; ``"SPL"`` for
the numpy array of a SimpleITK image, indexed z, y, x) and at its own spacing.

Resampling aligns the grids' extents and samples voxel centres: along one axis, native voxel
``x`` and model voxel ``t`` satisfy ``x + 0.5 = (t + 0.5) · n / m`` for ``n`` native and ``m``
model voxels. A crop maps onto a whole model grid, flips commute with resampling, and equal
sizes give the identity exactly. Nearest neighbour (masks, the way back) picks input voxel
``floor((x + 0.5) · n_in / n_out)``, computed in integers: exact at ties, where scipy's
``affine_transform`` rounds by floating point (2 voxels to 23: the middle one takes voxel 0, not 1),
so :meth:`GridMap.index_to_model`, :meth:`GridMap.to_native` and :meth:`GridMap.to_native_box`
agree voxel for voxel, and a sub-box of the native grid maps back from the model grid alone
(:meth:`GridMap.native_box_of`), as an incremental answer needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nfbench.models.base import Prediction
from nfbench.types import BoxSlices, Spacing

__all__ = [
    "Orientation", "GridMap", "Window", "box_around", "resample", "resampled_shape", "window_around", "cut", "paste",
]

_AXIS = {"R": (0, False), "L": (0, True), "A": (1, False), "P": (1, True), "S": (2, False), "I": (2, True)}


@dataclass(frozen=True)
class Orientation:
    """A model's axis codes: model axis ``n`` runs along canonical axis ``axes[n]``, reversed where ``flips[n]``.

    Each code names the direction in which the model's index increases, as in nibabel.
    """

    codes: str = "RAS"

    def __post_init__(self) -> None:
        codes = self.codes.upper()
        if len(codes) != 3 or any(c not in _AXIS for c in codes) or len({_AXIS[c][0] for c in codes}) != 3:
            raise ValueError(f"orientation {self.codes!r} must name each of R/L, A/P, S/I once (e.g. 'LPS')")
        object.__setattr__(self, "codes", codes)

    @property
    def axes(self) -> tuple[int, int, int]:
        return tuple(_AXIS[c][0] for c in self.codes)  # type: ignore[return-value]

    @property
    def flips(self) -> tuple[bool, bool, bool]:
        return tuple(_AXIS[c][1] for c in self.codes)  # type: ignore[return-value]

    def permute(self, values: Sequence) -> tuple:
        """Per-axis values of the native grid (shape, spacing) in the model's axis order."""
        return tuple(values[a] for a in self.axes)

    def to_model(self, array: np.ndarray) -> np.ndarray:
        """A native (canonical) 3D array in the model's orientation (a view)."""
        flipped = [n for n, f in enumerate(self.flips) if f]
        return np.flip(np.transpose(array, self.axes), axis=flipped) if flipped else np.transpose(array, self.axes)

    def to_native(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_model` (a view)."""
        flipped = [n for n, f in enumerate(self.flips) if f]
        unflipped = np.flip(array, axis=flipped) if flipped else array
        return np.transpose(unflipped, np.argsort(self.axes))

    def index_to_model(self, ijk: Sequence[int], native_shape: Sequence[int]) -> tuple[int, int, int]:
        """A native voxel index as an index of the reoriented array."""
        return tuple(
            native_shape[a] - 1 - ijk[a] if f else ijk[a] for a, f in zip(self.axes, self.flips)
        )  # type: ignore[return-value]

    def index_to_native(self, index: Sequence[int], native_shape: Sequence[int]) -> tuple[int, int, int]:
        """Inverse of :meth:`index_to_model`."""
        ijk = [0, 0, 0]
        for t, a, f in zip(index, self.axes, self.flips):
            ijk[a] = native_shape[a] - 1 - t if f else t
        return tuple(int(v) for v in ijk)  # type: ignore[return-value]


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """The number of voxels of spacing ``target`` closest to covering ``shape`` voxels of ``spacing``."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def _nearest(positions: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
    """The input voxel whose extent holds each output voxel's centre: ``floor((x + 0.5) · n_in / n_out)``, exactly."""
    return (2 * positions + 1) * n_in // (2 * n_out)


def resample(array: np.ndarray, shape: Sequence[int], *, order: int) -> np.ndarray:
    """``array`` on a grid of ``shape`` voxels with the same extent (linear: ``order=1``; masks: ``0``).

    Nearest neighbour (``order=0``) keeps the dtype (bool stays bool); equal shapes return a copy, exactly.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != array.ndim or any(n < 1 for n in shape):
        raise ValueError(f"cannot resample an array of shape {array.shape} to {shape}")
    if shape == array.shape:
        return array.copy()
    if order == 0:  # separable: one index per output voxel and axis
        return array[np.ix_(*(_nearest(np.arange(m), m, n) for n, m in zip(array.shape, shape)))]
    scale = np.array([n / m for n, m in zip(array.shape, shape)])
    data = array if order == 0 else array.astype(np.float32, copy=False)
    return ndimage.affine_transform(
        data, scale, offset=0.5 * scale - 0.5, output_shape=shape, order=order, mode="nearest"
    )


def box_around(
    ijk: Sequence[int], radius_mm: float | Sequence[float], spacing: Sequence[float], shape: Sequence[int]
) -> BoxSlices:
    """The box of ``radius_mm`` (per axis or for all; at least one voxel) around a voxel, clipped to the volume."""
    radius = np.broadcast_to(np.asarray(radius_mm, float), (3,))
    half = np.maximum(np.ceil(radius / np.asarray(spacing, float)).astype(int), 1)
    return tuple(
        slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(ijk, half, shape)
    )  # type: ignore[return-value]


@dataclass(frozen=True)
class GridMap:
    """A crop ``box`` of the native grid seen by a model: reoriented, then resampled to ``shape``."""

    box: BoxSlices
    orientation: Orientation
    native_spacing: Spacing
    shape: tuple[int, int, int]

    @classmethod
    def build(
        cls,
        native_shape: Sequence[int],
        native_spacing: Sequence[float],
        *,
        box: BoxSlices | None = None,
        codes: str = "RAS",
        spacing: Sequence[float] | None = None,
    ) -> GridMap:
        """The map of ``box`` (default: the whole volume) to axis ``codes`` and ``spacing`` (mm, model axes).

        Without ``spacing`` the native spacing is kept; otherwise the model grid has the number of
        voxels closest to it (its exact spacing is :attr:`spacing`).
        """
        box = tuple(slice(0, n) for n in native_shape) if box is None else tuple(box)  # type: ignore[assignment]
        if len(box) != 3 or any(not 0 <= s.start < s.stop <= n for s, n in zip(box, native_shape)):
            raise ValueError(f"crop {box} is empty or outside the volume of shape {tuple(native_shape)}")
        orientation = Orientation(codes)
        oriented = orientation.permute([s.stop - s.start for s in box])
        native_spacing = tuple(float(s) for s in native_spacing)
        shape = oriented if spacing is None else resampled_shape(oriented, orientation.permute(native_spacing), spacing)
        return cls(box, orientation, native_spacing, tuple(int(n) for n in shape))  # type: ignore[arg-type]

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        """The native crop's shape (canonical axes)."""
        return tuple(s.stop - s.start for s in self.box)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The model grid's spacing (mm, model axes): the crop's extent over the model's voxels."""
        extent = self.orientation.permute([n * s for n, s in zip(self.crop_shape, self.native_spacing)])
        return tuple(e / m for e, m in zip(extent, self.shape))  # type: ignore[return-value]

    def to_model(self, native: np.ndarray, *, order: int = 1) -> np.ndarray:
        """The full native array's crop, in the model's grid (linear for images by default)."""
        if native.ndim != 3 or any(s.stop > n for s, n in zip(self.box, native.shape)):
            raise ValueError(f"array of shape {native.shape} does not hold the crop {self.box}")
        return resample(self.orientation.to_model(native[self.box]), self.shape, order=order)

    def to_native(self, model: np.ndarray, *, order: int = 0) -> np.ndarray:
        """A model-grid array back on the native crop (canonical axes, the crop's shape; nearest by default)."""
        if order == 0:
            return self.to_native_box(model, self.box)
        self._check_model(model)
        oriented = self.orientation.permute(self.crop_shape)
        return np.ascontiguousarray(self.orientation.to_native(resample(model, oriented, order=order)))

    def to_native_box(self, model: np.ndarray, native_box: BoxSlices) -> np.ndarray:
        """``to_native(model)`` inside a box of the native grid (global indices, within the crop), computed there only.

        Nearest neighbour: each native voxel takes the model voxel of :meth:`index_to_model`, so the
        result equals the box's part of the full :meth:`to_native`, exactly. Returns a new
        C-contiguous array of the box's shape.
        """
        self._check_model(model)
        if len(native_box) != 3 or any(not c.start <= b.start <= b.stop <= c.stop for b, c in zip(native_box, self.box)):
            raise ValueError(f"native box {native_box} is not inside the crop {self.box}")
        canonical = np.argsort(self.orientation.axes)  # the model axis along each canonical axis
        sizes = self.orientation.permute(self.crop_shape)
        indices = []
        for axis, b, c in zip(canonical, native_box, self.box):
            local = np.arange(b.start - c.start, b.stop - c.start)
            oriented = sizes[axis] - 1 - local if self.orientation.flips[axis] else local
            indices.append(_nearest(oriented, sizes[axis], self.shape[axis]))
        return model.transpose(canonical)[np.ix_(*indices)]

    def native_box_of(self, model_box: BoxSlices) -> BoxSlices:
        """The native voxels (global box, canonical axes) whose model voxel lies in ``model_box`` (model axes).

        The box is clipped to the model grid; it may be empty where the model grid is finer than the
        native one (a model voxel that no native voxel samples).
        """
        if len(model_box) != 3:
            raise ValueError(f"model box {model_box} must have 3 axes")
        sizes = self.orientation.permute(self.crop_shape)
        out: list[slice] = [slice(0, 0)] * 3
        for axis, (b, n, m) in enumerate(zip(model_box, sizes, self.shape)):
            # the first oriented voxel x with floor((x + 0.5) m / n) >= t: x >= (2 n t - m) / (2 m)
            lo, hi = (min(max(-((m - 2 * n * min(max(t, 0), m)) // (2 * m)), 0), n) for t in (b.start, b.stop))
            if self.orientation.flips[axis]:
                lo, hi = n - hi, n - lo
            canonical = self.orientation.axes[axis]
            start = self.box[canonical].start
            out[canonical] = slice(start + lo, start + max(hi, lo))
        return tuple(out)  # type: ignore[return-value]

    def _check_model(self, model: np.ndarray) -> None:
        if tuple(model.shape) != self.shape:
            raise ValueError(f"model array of shape {model.shape} differs from the model grid {self.shape}")

    def prediction(self, mask: np.ndarray) -> Prediction:
        """A model-grid mask as the session's answer: the native crop, in its box."""
        return Prediction(self.to_native(np.asarray(mask, bool)), self.box)

    def index_to_model(self, ijk: Sequence[int]) -> tuple[int, int, int]:
        """The model voxel whose centre is closest to a native voxel (global index)."""
        local = [v - s.start for v, s in zip(ijk, self.box)]
        if any(not 0 <= v < n for v, n in zip(local, self.crop_shape)):
            raise ValueError(f"voxel {tuple(ijk)} is outside the crop {self.box}")
        oriented = self.orientation.index_to_model(local, self.crop_shape)
        sizes = self.orientation.permute(self.crop_shape)
        return tuple(
            min(int(np.floor((x + 0.5) * m / n)), m - 1) for x, n, m in zip(oriented, sizes, self.shape)
        )  # type: ignore[return-value]

    def index_to_native(self, index: Sequence[int]) -> tuple[int, int, int]:
        """The native voxel (global index) holding a model voxel's centre."""
        if any(not 0 <= t < m for t, m in zip(index, self.shape)):
            raise ValueError(f"model voxel {tuple(index)} is outside the model grid {self.shape}")
        sizes = self.orientation.permute(self.crop_shape)
        oriented = [min(int(np.floor((t + 0.5) * n / m)), n - 1) for t, n, m in zip(index, sizes, self.shape)]
        local = self.orientation.index_to_native(oriented, self.crop_shape)
        return tuple(v + s.start for v, s in zip(local, self.box))  # type: ignore[return-value]


@dataclass(frozen=True)
class Window:
    """A fixed-size window of an array that may reach past its borders.

    ``inside`` is the part of the array the window covers; ``within`` is where that part lies in
    the window. The rest of the window is padding.
    """

    inside: tuple[slice, ...]
    within: tuple[slice, ...]
    size: tuple[int, ...]


def window_around(centre: Sequence[int], size: Sequence[int], shape: Sequence[int]) -> Window:
    """The window of ``size`` voxels centred on ``centre`` (index ``size // 2`` of the window)."""
    if len(centre) != len(size) or len(size) != len(shape) or any(n < 1 for n in size):
        raise ValueError(
            f"window of size {tuple(size)} around {tuple(centre)} does not fit an array of {len(shape)} axes"
        )
    starts = [int(c) - n // 2 for c, n in zip(centre, size)]
    inside = tuple(slice(max(a, 0), min(a + n, s)) for a, n, s in zip(starts, size, shape))
    if any(s.stop <= s.start for s in inside):
        raise ValueError(
            f"window of size {tuple(size)} around {tuple(centre)} misses the array of shape {tuple(shape)}"
        )
    within = tuple(slice(i.start - a, i.stop - a) for i, a in zip(inside, starts))
    return Window(inside, within, tuple(int(n) for n in size))


def cut(array: np.ndarray, window: Window, fill: float = 0) -> np.ndarray:
    """The window's content: the array where it covers it, ``fill`` elsewhere (leading axes kept)."""
    lead = array.shape[: array.ndim - len(window.size)]
    out = np.full(lead + window.size, fill, dtype=array.dtype)
    out[(Ellipsis, *window.within)] = array[(Ellipsis, *window.inside)]
    return out


def paste(patch: np.ndarray, window: Window) -> np.ndarray:
    """The part of a window-shaped patch that lies in the array (goes to ``array[window.inside]``)."""
    if tuple(patch.shape[-len(window.size):]) != window.size:
        raise ValueError(f"patch of shape {patch.shape} differs from the window size {window.size}")
    return patch[(Ellipsis, *window.within)]

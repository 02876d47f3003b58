"""The phantom's voxel grid and the shape primitives drawn into it, always inside a cropped box.

All geometry is in *model* millimetres: ``x`` left→right centred on the body's midline, ``y``
posterior→anterior centred on the body, ``z`` inferior→superior from the bottom of a 1812.5 mm field
of view (feet near ``z = 20``, top of the head near ``z = 1800``). The affine of a case maps voxel
indices to RAS world millimetres with the field of view centred on the origin.

Every primitive is evaluated only in the voxels of its own bounding box, so drawing hundreds of
lesions into an 800 × 31 × 2900 volume stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nfbench.types import BoxSlices, Spacing

__all__ = ["FOV_MM", "Grid", "Tube", "Spheroid", "tube_mask", "spheroid_q", "spheroid_box"]

FOV_MM = (500.0, 241.8, 1812.5)
"""Field of view (mm) of the full-size phantom along RAS axes: 800 × 31 × 2900 voxels."""


@dataclass(frozen=True, eq=False)
class Grid:
    """Voxel grid of a case: shape and spacing in RAS order, and the model coordinate of every index."""

    shape: tuple[int, int, int]
    spacing: Spacing

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model coordinates (mm, float32) of the voxel centres along each axis."""
        x, y, z = (
            (self._origin(axis) + np.arange(n) * s).astype(np.float32)
            for axis, (n, s) in enumerate(zip(self.shape, self.spacing))
        )
        return x, y, z

    @property
    def affine(self) -> np.ndarray:
        """Canonical RAS affine: index → world mm, field of view centred on the origin."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(self.shape, self.spacing)]
        return aff

    def _origin(self, axis: int) -> float:
        """Model coordinate (mm) of index 0 along ``axis``."""
        n, s = self.shape[axis], self.spacing[axis]
        return -(n - 1) / 2.0 * s + (FOV_MM[2] / 2.0 if axis == 2 else 0.0)

    def box(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> BoxSlices | None:
        """Index slices of the voxels whose centres lie in ``[lo_mm, hi_mm]`` (None when empty)."""
        slices = []
        for axis in range(3):
            n, s, origin = self.shape[axis], self.spacing[axis], self._origin(axis)
            start = max(int(np.ceil((lo_mm[axis] - origin) / s)), 0)
            stop = min(int(np.floor((hi_mm[axis] - origin) / s)) + 1, n)
            if stop <= start:
                return None
            slices.append(slice(start, stop))
        return tuple(slices)  # type: ignore[return-value]

    def coords(self, box: BoxSlices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable model coordinates of a box: shapes (n0,1,1), (1,n1,1), (1,1,n2)."""
        x, y, z = self.axes
        return x[box[0]][:, None, None], y[box[1]][None, :, None], z[box[2]][None, None, :]

    def nearest_index(self, point_mm: np.ndarray) -> tuple[int, int, int] | None:
        """The voxel whose centre is nearest to a point, or None when the point is outside the grid."""
        idx = []
        for axis in range(3):
            n, s = self.shape[axis], self.spacing[axis]
            i = int(round((float(point_mm[axis]) - self._origin(axis)) / s))
            if not 0 <= i < n:
                return None
            idx.append(i)
        return idx[0], idx[1], idx[2]


@dataclass(frozen=True, eq=False)
class Tube:
    """A body part as a stack of axis-aligned ellipses along z (piecewise linear between knots).

    ``a`` and ``b`` are the semi-axes (mm) along x and y, ``fat_mm`` the subcutaneous fat under its
    skin. Near-zero semi-axes at the end knots round the ends off.
    """

    name: str
    z: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    fat_mm: float = 10.0

    @classmethod
    def from_knots(
        cls, name: str, z: ArrayLike, cx: ArrayLike, cy: ArrayLike, a: ArrayLike, b: ArrayLike,
        *, fat_mm: float = 10.0,
    ) -> Tube:
        """A tube from knot heights ``z`` and per-knot (or constant) centre and semi-axes, in mm."""
        z = np.asarray(z, float)
        full = [np.broadcast_to(np.asarray(v, float), z.shape).copy() for v in (cx, cy, a, b)]
        return cls(name, z, *full, fat_mm=fat_mm)

    def inset(self, depth_mm: float) -> Tube:
        """The same tube shrunk by ``depth_mm`` on every side (skin, fat, muscle layers)."""
        return Tube(
            self.name, self.z, self.cx, self.cy,
            np.maximum(self.a - depth_mm, 0.5), np.maximum(self.b - depth_mm, 0.5), self.fat_mm,
        )

    def at(self, z: float) -> tuple[float, float, float, float]:
        """Centre and semi-axes ``(cx, cy, a, b)`` of the cross-section at height ``z``."""
        cx, cy, a, b = (float(np.interp(z, self.z, v)) for v in (self.cx, self.cy, self.a, self.b))
        return cx, cy, a, b


def tube_mask(grid: Grid, tube: Tube) -> tuple[BoxSlices, np.ndarray] | None:
    """Voxels inside a tube, as its box and a boolean mask of that box (None if outside the grid)."""
    lo = np.array([np.min(tube.cx - tube.a), np.min(tube.cy - tube.b), tube.z[0]])
    hi = np.array([np.max(tube.cx + tube.a), np.max(tube.cy + tube.b), tube.z[-1]])
    box = grid.box(lo, hi)
    if box is None:
        return None
    x, y, z = grid.coords(box)
    zz = z[0, 0]
    cx, cy, a, b = (np.interp(zz, tube.z, v).astype(np.float32) for v in (tube.cx, tube.cy, tube.a, tube.b))
    # Two 2D terms, one 3D sum: the cost is one pass over the box.
    qx = ((x[:, :, 0] - cx[None, :]) / a[None, :]) ** 2  # (n0, n2)
    qy = ((y[0, :, :] - cy[None, :]) / b[None, :]) ** 2  # (n1, n2)
    mask = (qx[:, None, :] + qy[None, :, :]) <= 1.0
    return box, mask


@dataclass(frozen=True, eq=False)
class Spheroid:
    """A spheroid: centre (mm), unit axis ``direction``, half-length ``a`` along it, radius ``b`` across."""

    centre: np.ndarray
    direction: np.ndarray
    a: float
    b: float


def spheroid_box(s: Spheroid) -> tuple[np.ndarray, np.ndarray]:
    """Tight axis-aligned bounds (mm) of a spheroid."""
    d2 = s.direction**2
    half = np.sqrt(s.a**2 * d2 + s.b**2 * (1.0 - d2))
    return s.centre - half, s.centre + half


def spheroid_q(grid: Grid, box: BoxSlices, s: Spheroid) -> np.ndarray:
    """Normalised squared radius of a spheroid over a box: < 1 inside, 0 at the centre."""
    x, y, z = grid.coords(box)
    ux, uy, uz = x - np.float32(s.centre[0]), y - np.float32(s.centre[1]), z - np.float32(s.centre[2])
    d = s.direction.astype(np.float32)
    along = ux * d[0] + uy * d[1] + uz * d[2]
    r2 = ux**2 + uy**2 + uz**2
    along2 = along**2
    return along2 / np.float32(s.a**2) + (r2 - along2) / np.float32(s.b**2)

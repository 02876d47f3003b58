"""Click encodings for learned models, computed on a crop: balls (disks in 2D), Gaussians, distances.

Every function works on an array of any dimension (a 3D crop or a 2D slice). Radii, sigmas and
scales are in millimetres when ``spacing`` is given and in voxels when it is not. Clicks are
encoded in a crop because a map of the whole volume costs a whole-volume pass per click;
:func:`click_channels` turns the session's clicks into the usual positive and negative channels
of one native crop. On a model's own grid, map the clicks first
(:meth:`~nfbench.models.blocks.grids.GridMap.index_to_model`) and encode with the grid's
``shape`` and ``spacing``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import edt
import numpy as np

from nfbench.types import BoolMask, BoxSlices, Click

__all__ = ["ball", "balls", "gaussian", "exp_distance", "distance_to_points", "click_channels", "points_in"]

Point = Sequence[int]
SpacingLike = Sequence[float] | None
Encoder = Callable[[tuple[int, ...], list[tuple[int, ...]]], np.ndarray]


def _unit(spacing: SpacingLike, ndim: int) -> np.ndarray:
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    if sp.shape != (ndim,) or np.any(sp <= 0):
        raise ValueError(f"spacing must be {ndim} positive values, got {spacing}")
    return sp


def ball(
    shape: Sequence[int], centre: Sequence[float], radius: float, spacing: SpacingLike = None
) -> BoolMask:
    """Voxels of an array of ``shape`` within ``radius`` of ``centre`` (a disk in 2D).

    ``centre`` is an index into the array and may lie outside it (a ball reaching into a crop).
    """
    sp = _unit(spacing, len(shape))
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, sp))
    return np.broadcast_to(dist2 <= radius**2, tuple(shape)).copy()


def balls(
    shape: Sequence[int], points: Sequence[Point], radius: float, spacing: SpacingLike = None
) -> BoolMask:
    """The union of the balls of ``radius`` around ``points``."""
    out = np.zeros(tuple(shape), bool)
    for point in points:
        out |= ball(shape, point, radius, spacing)
    return out


def distance_to_points(
    shape: Sequence[int], points: Sequence[Point], spacing: SpacingLike = None
) -> np.ndarray:
    """Euclidean distance (float32, mm with ``spacing``) from every voxel to the nearest point.

    One exact distance transform (the ``edt`` package, anisotropic) of the crop, however many
    points; ``inf`` everywhere when there is none. The points must lie in the array.
    """
    sp = _unit(spacing, len(shape))
    if not points:
        return np.full(tuple(shape), np.inf, np.float32)
    seeds = np.ones(tuple(shape), np.uint8)
    for point in points:
        if any(not 0 <= v < n for v, n in zip(point, shape)):
            raise ValueError(f"point {tuple(point)} is outside the array of shape {tuple(shape)}")
        seeds[tuple(point)] = 0
    return edt.edt(seeds, anisotropy=tuple(sp), black_border=False).astype(np.float32, copy=False)


def gaussian(
    shape: Sequence[int], points: Sequence[Point], sigma: float, spacing: SpacingLike = None
) -> np.ndarray:
    """``exp(-d² / 2σ²)`` of the distance ``d`` to the nearest point (float32, 1 at each point)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    d = distance_to_points(shape, points, spacing)
    return np.exp(-(d**2) / np.float32(2 * sigma**2)).astype(np.float32)


def exp_distance(
    shape: Sequence[int], points: Sequence[Point], scale: float, spacing: SpacingLike = None
) -> np.ndarray:
    """``exp(-d / scale)`` of the distance ``d`` to the nearest point (float32, 1 at each point)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return np.exp(-distance_to_points(shape, points, spacing) / np.float32(scale)).astype(np.float32)


def points_in(box: BoxSlices, clicks: Sequence[Click], positive: bool) -> list[tuple[int, ...]]:
    """The clicks of one sign that fall in ``box``, as indices into the crop."""
    return [
        tuple(v - s.start for v, s in zip(c.ijk, box))
        for c in clicks
        if c.positive == positive and all(s.start <= v < s.stop for v, s in zip(c.ijk, box))
    ]


def click_channels(box: BoxSlices, clicks: Sequence[Click], encode: Encoder) -> np.ndarray:
    """Positive and negative click maps of the crop ``box``: float32 of shape ``(2, *box shape)``.

    ``encode(shape, points)`` makes one channel, e.g.
    ``lambda shape, pts: gaussian(shape, pts, sigma=3.0, spacing=spacing)``. Clicks outside the
    crop are left out: crop around the clicks that matter to the model.
    """
    shape = tuple(s.stop - s.start for s in box)
    return np.stack([np.asarray(encode(shape, points_in(box, clicks, sign)), np.float32) for sign in (True, False)])

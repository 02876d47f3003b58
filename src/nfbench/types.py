"""Small domain types shared by every layer: spacing, voxel indices, clicks and boxes.

Voxel indices (``ijk``) always refer to the canonical RAS+ grid of a loaded volume
(axis 0 = left→right, axis 1 = posterior→anterior, axis 2 = inferior→superior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Spacing = tuple[float, float, float]
Index3 = tuple[int, int, int]
BoolMask = npt.NDArray[np.bool_]
BoxSlices = tuple[slice, slice, slice]

__all__ = ["Spacing", "Index3", "BoolMask", "BoxSlices", "Click", "Box"]


@dataclass(frozen=True)
class Click:
    """One simulated click: a voxel of the canonical RAS grid and its sign.

    ``positive`` is True for "this is lesion", False for "this is not lesion".
    """

    ijk: Index3
    positive: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "ijk", tuple(int(v) for v in self.ijk))
        object.__setattr__(self, "positive", bool(self.positive))


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the canonical RAS grid, ``lo`` inclusive, ``hi`` exclusive.

    A 2D box (one coronal slice) has ``hi[1] == lo[1] + 1``.
    """

    lo: Index3
    hi: Index3

    def __post_init__(self) -> None:
        object.__setattr__(self, "lo", tuple(int(v) for v in self.lo))
        object.__setattr__(self, "hi", tuple(int(v) for v in self.hi))
        if any(h <= l for l, h in zip(self.lo, self.hi)):
            raise ValueError(f"empty box: lo={self.lo}, hi={self.hi}")

    @property
    def slices(self) -> BoxSlices:
        return tuple(slice(l, h) for l, h in zip(self.lo, self.hi))  # type: ignore[return-value]

"""The contract every interactive model satisfies (DESIGN §3).

A model is loaded once (weights, devices) and answers ``start(image)`` with a per-case
:class:`Session`; the session keeps the click history of the current object and returns a boolean
mask in the native canonical grid. Third-party models satisfy these protocols without inheriting.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from nfbench.io.volume import Volume
from nfbench.types import BoolMask, Box, Click

__all__ = ["InteractiveModel", "Session", "ModelError", "check_prediction", "CAPABILITIES"]

CAPABILITIES = frozenset({"click", "box", "prev_mask"})


class ModelError(RuntimeError):
    """A model broke the contract (wrong mask shape or type) or could not be loaded."""


@runtime_checkable
class Session(Protocol):
    """Per-case state of a model: the clicks (and boxes) given since the last reset."""

    def reset(self) -> None:
        """Forget every prompt: the next click starts a new object."""

    def add_click(self, click: Click) -> None:
        """Record one click (canonical RAS voxel index and sign)."""

    def add_box(self, box: Box) -> None:
        """Record a box prompt (only for models with the ``box`` capability)."""

    def predict(self) -> BoolMask:
        """The current mask, ``bool`` with the image's shape."""


@runtime_checkable
class InteractiveModel(Protocol):
    """A loaded model. ``capabilities`` is a subset of :data:`CAPABILITIES`."""

    name: str
    capabilities: frozenset[str]

    def start(self, image: Volume) -> Session:
        """Prepare one case (preprocessing, caches) and return its session."""


def check_prediction(model_name: str, mask: object, shape: tuple[int, ...]) -> BoolMask:
    """Refuse a prediction that breaks the contract, naming the model; returns it as a bool array."""
    if not isinstance(mask, np.ndarray):
        raise ModelError(f"model {model_name!r} returned {type(mask).__name__}, expected a numpy bool array")
    if mask.shape != tuple(shape):
        raise ModelError(f"model {model_name!r} returned a mask of shape {mask.shape}, expected {tuple(shape)}")
    if mask.dtype != np.bool_:
        raise ModelError(f"model {model_name!r} returned a mask of dtype {mask.dtype}, expected bool")
    return mask

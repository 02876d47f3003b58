"""The contract every interactive model satisfies (DESIGN §3).

A model is loaded once (weights, devices) and answers ``start(image, seed=...)`` with a per-case
:class:`Session`, once per case: the session is reset between lesions and between scenarios, so a
per-case cache (an image encoder's features, a no-click forward pass) is built once and shared. The
session keeps the prompts of the current object and answers ``predict()`` with either

- a ``bool`` mask of the image's shape, or
- a :class:`Prediction`: the mask inside a box, the previous answer standing outside it. A model
  that touched a small region says so, and the engine never scans the whole volume for it.

Third-party models satisfy these protocols without inheriting. A session may define ``close()``
to free memory once its case is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from nfbench.io.volume import Volume
from nfbench.types import BoolMask, Box, BoxSlices, Click

__all__ = ["InteractiveModel", "Session", "Prediction", "ModelError", "check_prediction", "CAPABILITIES"]

#: ``click``: takes clicks; ``box``: takes 2D box prompts. The engine gives a model only the prompts
#: its capabilities name.
CAPABILITIES = frozenset({"click", "box"})


class ModelError(RuntimeError):
    """A model broke the contract (wrong mask shape or type) or could not be loaded."""


@dataclass(frozen=True)
class Prediction:
    """The session's mask inside ``box``; outside it, the previous answer (empty after a reset) stands.

    ``mask`` has the box's shape. A box with a zero-length side means "nothing changed".
    """

    mask: BoolMask
    box: BoxSlices


@runtime_checkable
class Session(Protocol):
    """Per-case state of a model: the prompts given since the last reset."""

    def reset(self) -> None:
        """Forget every prompt: the next prompt starts a new object (a lesion, or a new scenario)."""

    def add_click(self, click: Click) -> None:
        """Record one click (canonical RAS voxel index and sign); models with ``click``."""

    def add_box(self, box: Box) -> None:
        """Record a box prompt; models with ``box``."""

    def predict(self) -> BoolMask | Prediction:
        """The current mask: full-size ``bool``, or a :class:`Prediction` of the part that changed."""


@runtime_checkable
class InteractiveModel(Protocol):
    """A loaded model. ``capabilities`` is a non-empty subset of :data:`CAPABILITIES`."""

    name: str
    capabilities: frozenset[str]

    def start(self, image: Volume, *, seed: int = 0) -> Session:
        """Prepare one case (preprocessing, caches) and return its session; ``seed`` is the run's."""


def check_prediction(model_name: str, answer: object, shape: tuple[int, ...]) -> Prediction:
    """Refuse an answer that breaks the contract, naming the model; a full mask becomes a whole-image
    :class:`Prediction`."""
    if isinstance(answer, Prediction):
        box, mask = _whole_slices(model_name, answer.box, shape), answer.mask
        expected = tuple(s.stop - s.start for s in box)
    else:
        mask, expected = answer, tuple(shape)
        box = tuple(slice(0, n) for n in shape)
    if not isinstance(mask, np.ndarray):
        raise ModelError(f"model {model_name!r} returned {type(mask).__name__}, expected a numpy bool array")
    if mask.shape != expected:
        raise ModelError(f"model {model_name!r} returned a mask of shape {mask.shape}, expected {expected}")
    if mask.dtype != np.bool_:
        raise ModelError(f"model {model_name!r} returned a mask of dtype {mask.dtype}, expected bool")
    return Prediction(mask, box)  # type: ignore[arg-type]


def _whole_slices(model_name: str, box: object, shape: tuple[int, ...]) -> BoxSlices:
    """A Prediction's box as slices with explicit bounds (``slice(None)`` is the whole axis)."""
    try:
        bounds = [(0 if s.start is None else int(s.start), n if s.stop is None else int(s.stop), s.step)
                  for s, n in zip(box, shape, strict=True)]  # type: ignore[call-overload]
    except (TypeError, ValueError, AttributeError):
        bounds = None
    if bounds is None or any(step not in (None, 1) or not 0 <= lo <= hi <= n
                             for (lo, hi, step), n in zip(bounds, shape)):
        raise ModelError(f"model {model_name!r} returned a Prediction box {box} that is not a box "
                         f"of unit-step slices inside the image of shape {tuple(shape)}")
    return tuple(slice(lo, hi) for lo, hi, _ in bounds)  # type: ignore[return-value]

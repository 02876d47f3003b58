"""The engine's side of the model contract, written out plainly for model tests.

A session may answer with a full mask or a :class:`~nfbench.models.base.Prediction` of the box
that changed; :class:`FullMaskSession` checks every answer and assembles it onto the previous one,
so a test can assert on full masks whatever the model returns.
"""

from __future__ import annotations

import numpy as np

from nfbench.io.volume import Volume
from nfbench.models.base import Prediction, check_prediction
from nfbench.models.registry import load_model
from nfbench.types import Click


class FullMaskSession:
    """A model's session whose ``predict`` returns the assembled full mask (a fresh copy)."""

    def __init__(self, name: str, image: Volume, **options) -> None:
        self.name, self.shape = name, image.shape
        self.session = load_model(name, **options).start(image)
        self.mask = np.zeros(self.shape, bool)
        self.last: Prediction | None = None

    def reset(self) -> None:
        self.session.reset()
        self.mask[:] = False

    def add_click(self, click: Click) -> None:
        self.session.add_click(click)

    def add_box(self, box) -> None:
        self.session.add_box(box)

    def predict(self) -> np.ndarray:
        self.last = check_prediction(self.name, self.session.predict(), self.shape)
        self.mask[self.last.box] = self.last.mask
        return self.mask.copy()

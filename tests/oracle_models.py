"""Hand-checkable models for tests of the engine: their answers follow from the clicks alone."""

from __future__ import annotations

import numpy as np

from nfbench.io.volume import Volume
from nfbench.types import Box, Click


class OracleModel:
    """Returns the true instance under each positive click; negative clicks remove the instance under them.

    Built with the instance map it is allowed to see, so corrective clicks always help.
    """

    capabilities = frozenset({"click"})

    def __init__(self, instances: np.ndarray, name: str = "oracle") -> None:
        self.instances = instances
        self.name = name

    def start(self, image: Volume) -> "OracleSession":
        return OracleSession(self.instances)


class OracleSession:
    def __init__(self, instances: np.ndarray) -> None:
        self.instances = instances
        self.reset()

    def reset(self) -> None:
        self.mask = np.zeros(self.instances.shape, bool)

    def add_click(self, click: Click) -> None:
        value = self.instances[click.ijk]
        if click.positive and value:
            self.mask |= self.instances == value
        elif not click.positive:
            self.mask[click.ijk] = False

    def add_box(self, box: Box) -> None:
        raise NotImplementedError

    def predict(self) -> np.ndarray:
        return self.mask.copy()


class BrokenModel:
    """Returns a mask of the wrong type, to test that the engine names the model."""

    capabilities = frozenset({"click"})
    name = "broken"

    def start(self, image: Volume) -> "BrokenModel":
        self.shape = image.shape
        return self

    def reset(self) -> None:
        pass

    def add_click(self, click: Click) -> None:
        pass

    def predict(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)

"""Hand-checkable models for tests of the engine: their answers follow from the clicks alone."""

from __future__ import annotations

import numpy as np

from nfbench.bbox import mask_bbox, pad_bbox, union_bbox
from nfbench.io.volume import Volume
from nfbench.models.base import Prediction
from nfbench.types import Box, BoxSlices, Click


class OracleModel:
    """A positive click adds the whole true lesion under it; a negative click removes the clicked voxel.

    Built with the instance map it is allowed to see, so corrective clicks always help. Its session
    answers with a :class:`Prediction` of the box that changed since the last answer, or with a
    full-size mask when ``full_masks`` is set; the two must give the engine identical results.
    ``starts`` and ``closed`` count the sessions started and closed, ``seeds`` records the seeds received.
    """

    capabilities = frozenset({"click"})

    def __init__(self, instances: np.ndarray, name: str = "oracle", *, full_masks: bool = False) -> None:
        self.instances = instances
        self.name = name
        self.full_masks = full_masks
        self.starts = self.closed = 0
        self.seeds: list[int] = []

    def region(self, instances: np.ndarray, value: int) -> tuple[BoxSlices, np.ndarray]:
        """What a positive click on lesion ``value`` adds: a box and the mask inside it."""
        box = mask_bbox(instances == value)
        return box, instances[box] == value

    def start(self, image: Volume, *, seed: int = 0) -> "OracleSession":
        self.starts += 1
        self.seeds.append(seed)
        return OracleSession(self)


class OracleSession:
    def __init__(self, model: OracleModel) -> None:
        self.model, self.instances = model, model.instances  # the case it was started on
        self.mask = np.zeros(model.instances.shape, bool)
        self.reset()

    def reset(self) -> None:
        self.mask[:] = False
        self.changed: BoxSlices | None = None

    def _touch(self, box: BoxSlices) -> None:
        self.changed = union_bbox(self.changed, box)

    def add_click(self, click: Click) -> None:
        value = int(self.instances[click.ijk])
        if click.positive and value:
            box, region = self.model.region(self.instances, value)
            self.mask[box] |= region
            self._touch(box)
        elif not click.positive:
            self.mask[click.ijk] = False
            self._touch(tuple(slice(v, v + 1) for v in click.ijk))

    def add_box(self, box: Box) -> None:
        raise AssertionError("a click-only model was sent a box")

    def close(self) -> None:
        self.model.closed += 1

    def predict(self) -> np.ndarray | Prediction:
        if self.model.full_masks:
            return self.mask.copy()
        box = self.changed or (slice(0, 0),) * 3
        self.changed = None
        return Prediction(self.mask[box].copy(), box)


class HalfOracle(OracleModel):
    """Adds only every other voxel of the clicked lesion, so corrective clicks are needed."""

    def region(self, instances: np.ndarray, value: int) -> tuple[BoxSlices, np.ndarray]:
        box, region = super().region(instances, value)
        checker = np.indices(instances.shape).sum(axis=0)[box] % 2 == 0
        return box, region & checker


class SwollenOracle(OracleModel):
    """Adds the clicked lesion grown by one voxel: every corrective click must be negative."""

    def region(self, instances: np.ndarray, value: int) -> tuple[BoxSlices, np.ndarray]:
        from scipy import ndimage

        box = pad_bbox(mask_bbox(instances == value), 1, instances.shape)
        return box, ndimage.binary_dilation(instances[box] == value)


class BoxOnlyModel:
    """Takes boxes only: answers each box with the true lesions that cross the box's slice inside it."""

    capabilities = frozenset({"box"})

    def __init__(self, instances: np.ndarray, name: str = "box-only") -> None:
        self.instances = instances
        self.name = name
        self.boxes: list[Box] = []

    def start(self, image: Volume, *, seed: int = 0) -> "BoxOnlySession":
        return BoxOnlySession(self)


class BoxOnlySession:
    def __init__(self, model: BoxOnlyModel) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.mask = np.zeros(self.model.instances.shape, bool)

    def add_click(self, click: Click) -> None:
        raise AssertionError("a box-only model was sent a click")

    def add_box(self, box: Box) -> None:
        self.model.boxes.append(box)
        inside = self.model.instances[tuple(slice(lo, hi) for lo, hi in zip(box.lo, box.hi))]
        for value in np.unique(inside[inside > 0]):
            self.mask |= self.model.instances == value

    def predict(self) -> np.ndarray:
        return self.mask.copy()


class BrokenModel:
    """Returns a mask of the wrong type, to test that the engine names the model."""

    capabilities = frozenset({"click"})
    name = "broken"

    def start(self, image: Volume, *, seed: int = 0) -> "BrokenModel":
        self.shape = image.shape
        return self

    def reset(self) -> None:
        pass

    def add_click(self, click: Click) -> None:
        pass

    def add_box(self, box: Box) -> None:
        pass

    def predict(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)

"""The engine's side of the model contract, written out plainly for model tests.

A session may answer with a full mask or a :class:`~nfbench.models.base.Prediction` of the box
that changed; :class:`FullMaskSession` checks every answer and assembles it onto the previous one,
so a test can assert on full masks whatever the model returns. :func:`check_against_full_remap`
drives a sliding-window session through clicks and resets and compares every answer with the
whole model-grid mask mapped back (what the sessions did before their partial remap).
"""

from __future__ import annotations

from collections.abc import Callable

import nibabel as nib
import numpy as np
from scipy import ndimage

from nfbench.bbox import mask_bbox
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


def kept_components(raw: np.ndarray, seeds, keep: bool = True) -> np.ndarray:
    """``raw`` (with ``keep``: only its 26-connected components holding a seed), labelled over the whole
    grid with scipy, independently of the models' cc3d."""
    if not keep:
        return raw.copy()
    labels, _ = ndimage.label(raw, structure=np.ones((3, 3, 3), bool))
    ids = {labels[tuple(s)] for s in seeds} - {0}
    return np.isin(labels, sorted(ids))


def check_against_full_remap(session, raw: Callable[[], np.ndarray], keep: bool, rng: np.random.Generator,
                             steps: int = 7) -> list[int]:
    """Clicks (positive ones on the model's current mask, negatives anywhere; a reset halfway) and, after
    each, the session's answer against the whole model grid mapped back; returns the voxels changed per answer.

    ``raw()`` is the session's model-grid mask now (the whole grid).
    """
    shape = session.previous.shape
    before = np.zeros(shape, bool)
    sizes = []
    for step in range(steps):
        if step == steps // 2:
            session.reset()
            before[...] = False
        whole = session.grid.to_native(raw())
        positive = step % 3 != 2 and whole.any()
        candidates = np.argwhere(whole) if positive else np.argwhere(np.ones(shape, bool))
        session.add_click(Click(tuple(int(v) for v in candidates[rng.integers(len(candidates))]), positive))
        answer = session.predict()
        seeds = [session.grid.index_to_model(c.ijk) for c in session.clicks if c.positive]
        full = session.grid.to_native(kept_components(raw(), seeds, keep))
        assert_diff_answer(answer, full, before)
        np.testing.assert_array_equal(session.previous, full)
        sizes.append(int(np.count_nonzero(full != before)))
        before = full
    return sizes


def two_balls(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> tuple[Volume, np.ndarray]:
    """Two bright balls (radius 6 voxels, 1.5 across the thick axis 1) in opposite corners of a dim
    body, as a volume, and the balls' mask: a known network that segments bright voxels finds both."""
    data = np.ones(shape, np.float32)
    i, j, k = np.indices(shape)
    for ci, ck in ((12, 12), (shape[0] - 12, shape[2] - 12)):
        data[(i - ci) ** 2 + ((j - shape[1] // 2) * 4) ** 2 + (k - ck) ** 2 <= 36] = 10.0
    affine = np.diag([*spacing, 1.0])
    return Volume(data, affine, affine.copy(), nib.Nifti1Header()), data > 5


def assert_diff_answer(answer, full: np.ndarray, before: np.ndarray) -> None:
    """``answer`` is the box where ``full`` differs from ``before``, holding ``full`` there (empty: no change)."""
    changed = mask_bbox(full != before)
    if changed is None:
        assert all(s.stop == s.start for s in answer.box)
    else:
        assert answer.box == changed
        np.testing.assert_array_equal(answer.mask, full[changed])

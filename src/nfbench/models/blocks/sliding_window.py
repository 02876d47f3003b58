"""Sliding-window inference over a 3D array, patches blended with Gaussian or constant weights.

Backend-agnostic: the predictor receives numpy patches and may return numpy arrays or tensors
(anything with ``detach().cpu().numpy()`` or ``__array__``), so a torch network wraps itself, e.g.
``lambda p: net(torch.from_numpy(p)[None].to(device))[0]``. Accumulation is in float32 numpy,
on the CPU, over the array's spatial axes (the last ``len(patch_size)``); leading axes (channels)
pass through to the predictor.

:class:`WindowCache` keeps every window's answer so that, when only a small region of the input
changes (an interactive model's click channels near a new click), only the windows that see the
change are run again and the blend is redone over their extent, in the same order as a full pass.
Its :attr:`~WindowCache.blended` boxes say where the last :meth:`~WindowCache.infer` may have
changed the answer, so a caller can update what it derives from the answer there only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["BLENDS", "WindowCache", "gaussian_weights", "sliding_window", "window_boxes", "window_starts"]

BLENDS = ("gaussian", "constant")
Predictor = Callable[[np.ndarray], object]
Box = tuple[slice, ...]


def window_starts(size: int, patch: int, step: int) -> list[int]:
    """Window starts along one axis: first 0, last ``size - patch``, evenly spread at most ``step`` apart."""
    if patch < 1 or step < 1:
        raise ValueError(f"patch ({patch}) and step ({step}) must be at least 1")
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / step) + 1
    return [round(i * (size - patch) / (n - 1)) for i in range(n)]


def window_boxes(shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> Iterator[tuple[slice, ...]]:
    """Every window of ``patch_size`` over ``shape`` (at least the patch size) with the given ``overlap`` (0–1)."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    axes = [window_starts(n, p, max(int(p * (1 - overlap)), 1)) for n, p in zip(shape, patch_size)]
    for starts in np.ndindex(*(len(a) for a in axes)):
        yield tuple(slice(a[s], a[s] + p) for a, s, p in zip(axes, starts, patch_size))


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian of ``sigma = sigma_scale · patch`` per axis centred on the patch, peak 1.

    Borders weigh little (down to ``exp(-1 / (8 sigma_scale²))``) but never 0, so every voxel has weight.
    """
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}")
    weights = np.ones((), np.float32)
    for n in patch_size:
        x = np.arange(n) - (n - 1) / 2
        profile = np.exp(-0.5 * (x / (sigma_scale * n)) ** 2)
        weights = np.multiply.outer(weights, (profile / profile.max()).astype(np.float32))
    return weights


def _numpy(value: object) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(value, dtype=np.float32)


class WindowCache:
    """The windows of a sliding window over a fixed grid, their cached answers and the blend of them.

    ``infer`` runs the windows without an answer yet and those whose box meets a ``changed`` box,
    then re-blends only over the re-run windows' extent (adding every window there in the order of
    a full pass), so the result equals a full pass. :meth:`snapshot` / :meth:`restore` return to an
    earlier state (e.g. the answers without clicks) without running anything; answers are replaced,
    never modified in place, so a snapshot shares them.

    Parameters
    ----------
    shape : sequence of int
        The spatial grid, at least ``patch_size`` along every axis (pad before).
    patch_size, overlap, blend, sigma_scale
        As :func:`sliding_window`.
    """

    def __init__(self, shape: Sequence[int], patch_size: Sequence[int], *, overlap: float = 0.5,
                 blend: str = "gaussian", sigma_scale: float = 0.125) -> None:
        if blend not in BLENDS:
            raise ValueError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
        self.shape, self.patch_size = tuple(int(n) for n in shape), tuple(int(p) for p in patch_size)
        if len(self.shape) != len(self.patch_size) or any(n < p for n, p in zip(self.shape, self.patch_size)):
            raise ValueError(f"window cache grid {self.shape} must have the patch's {len(self.patch_size)} axes "
                             f"and be at least the patch size {self.patch_size} (pad it first)")
        self.boxes = list(window_boxes(self.shape, self.patch_size, overlap))
        self._starts = np.array([[s.start for s in box] for box in self.boxes])
        self.weights = (gaussian_weights(self.patch_size, sigma_scale) if blend == "gaussian"
                        else np.ones(self.patch_size, np.float32))
        self.total = np.zeros(self.shape, np.float32)
        for box in self.boxes:
            self.total[box] += self.weights
        self.answers: list[np.ndarray | None] = [None] * len(self.boxes)
        self.result: np.ndarray | None = None
        self.windows_run = 0
        """Windows evaluated so far (all calls of :meth:`infer`)."""
        self.blended: list[Box] = []
        """The boxes the last :meth:`infer` re-blended (one hull of re-run windows per change; empty when
        it ran nothing): outside them its answer is the previous one. After :meth:`restore`, the whole grid."""

    def meeting(self, box: Box) -> np.ndarray:
        """Indices of the windows whose box intersects ``box`` (a box of the grid, may reach outside it)."""
        lo = np.array([s.start for s in box])
        hi = np.array([s.stop for s in box])
        size = np.array(self.patch_size)
        return np.flatnonzero(np.all((self._starts < hi) & (self._starts + size > lo), axis=1))

    def infer(self, inputs: Callable[[Box], np.ndarray], predict: Predictor, changed: Sequence[Box] = (),
              batch_size: int = 1) -> np.ndarray:
        """The blended answer after re-running the windows that meet ``changed`` (and any never run).

        ``inputs(box)`` gives a window's input ``(*lead, *patch_size)``; ``predict`` maps a batch of
        them ``(B, *lead, *patch_size)`` to ``(B, *out_lead, *patch_size)``. Returns the cache's own
        float32 ``(*out_lead, *shape)`` array (copy it to keep it past the next call).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        missing = [i for i, a in enumerate(self.answers) if a is None]
        groups = [g for g in [missing, *(self.meeting(box).tolist() for box in changed)] if g]
        order = sorted({i for group in groups for i in group})
        nd = len(self.patch_size)
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            answers = _numpy(predict(np.stack([inputs(self.boxes[i]) for i in batch])))
            if answers.ndim < nd + 1 or answers.shape[0] != len(batch) or answers.shape[-nd:] != self.patch_size:
                raise ValueError(f"the predictor returned shape {answers.shape} for {len(batch)} patches "
                                 f"of size {self.patch_size}")
            for i, answer in zip(batch, answers):
                self.answers[i] = answer
            self.windows_run += len(batch)
        # one hull per change: two far-apart clicks do not re-blend all between them
        self.blended = [self._blend(group) for group in groups]
        assert self.result is not None
        return self.result

    def _blend(self, rerun: list[int]) -> Box:
        """Redo the weighted average over the extent of the re-run windows (returned), adding windows in index order."""
        starts = self._starts[rerun]
        hull = tuple(slice(int(a), int(b) + p) for a, b, p in zip(starts.min(0), starts.max(0), self.patch_size))
        first = self.answers[rerun[0]]
        assert first is not None
        lead = first.shape[:-len(self.shape)]
        if self.result is None:
            self.result = np.zeros(lead + self.shape, np.float32)
        out = np.zeros(lead + tuple(s.stop - s.start for s in hull), np.float32)
        for i in self.meeting(hull):
            box, answer = self.boxes[i], self.answers[i]
            assert answer is not None
            inner = tuple(slice(max(b.start, h.start), min(b.stop, h.stop)) for b, h in zip(box, hull))
            local = tuple(slice(n.start - h.start, n.stop - h.start) for n, h in zip(inner, hull))
            own = tuple(slice(n.start - b.start, n.stop - b.start) for n, b in zip(inner, box))
            out[(Ellipsis, *local)] += answer[(Ellipsis, *own)] * self.weights[own]
        out /= self.total[hull]
        self.result[(Ellipsis, *hull)] = out
        return hull

    def snapshot(self) -> tuple[list[np.ndarray | None], np.ndarray | None]:
        """The current answers and blend, to :meth:`restore` later (the answers are shared, not copied)."""
        return list(self.answers), None if self.result is None else self.result.copy()

    def restore(self, state: tuple[list[np.ndarray | None], np.ndarray | None]) -> None:
        """Back to a :meth:`snapshot`, running nothing."""
        answers, result = state
        self.answers = list(answers)
        self.result = None if result is None else result.copy()
        self.blended = [tuple(slice(0, n) for n in self.shape)]


def sliding_window(
    array: np.ndarray,
    predict: Predictor,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    pad_value: float = 0.0,
) -> np.ndarray:
    """``predict`` over ``array`` patch by patch, the overlapping answers blended into one array.

    Parameters
    ----------
    array : ndarray
        ``(*lead, *spatial)``: the spatial axes are the last ``len(patch_size)``.
    predict : callable
        A patch ``(*lead, *patch_size)`` → ``(*out_lead, *patch_size)`` (e.g. class logits).
    patch_size : sequence of int
        The predictor's input size; an array smaller than it is padded with ``pad_value``
        (centred) and the answer cropped back.
    overlap : float
        Fraction of a patch shared with the next window along each axis.
    blend : ``"gaussian"`` or ``"constant"``
        Weights of a patch's voxels in the average (Gaussian: the centre counts most).

    Returns
    -------
    ndarray
        float32 ``(*out_lead, *spatial)``.
    """
    patch_size = tuple(int(p) for p in patch_size)
    nd = len(patch_size)
    if array.ndim < nd:
        raise ValueError(f"array of shape {array.shape} has fewer than {nd} spatial axes")
    lead, spatial = array.shape[:-nd], array.shape[-nd:]
    before = [max(p - n, 0) // 2 for n, p in zip(spatial, patch_size)]
    padding = [(0, 0)] * len(lead) + [(b, max(p - n, 0) - b) for b, n, p in zip(before, spatial, patch_size)]
    padded = np.pad(array, padding, constant_values=pad_value) if any(sum(p) for p in padding) else array
    cache = WindowCache(padded.shape[-nd:], patch_size, overlap=overlap, blend=blend, sigma_scale=sigma_scale)
    out = cache.infer(lambda box: padded[(Ellipsis, *box)], lambda batch: _numpy(predict(batch[0]))[None])
    return out[(Ellipsis, *(slice(b, b + n) for b, n in zip(before, spatial)))]

"""Sliding-window inference over a 3D array, patches blended with Gaussian or constant weights.

Backend-agnostic: the predictor receives numpy patches and may return numpy arrays or tensors
(anything with ``detach().cpu().numpy()`` or ``__array__``), so a torch network wraps itself, e.g.
``lambda p: net(torch.from_numpy(p)[None].to(device))[0]``. Accumulation is in float32 numpy,
on the CPU, over the array's spatial axes (the last ``len(patch_size)``); leading axes (channels)
pass through to the predictor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["sliding_window", "window_starts", "window_boxes", "gaussian_weights", "BLENDS"]

BLENDS = ("gaussian", "constant")
Predictor = Callable[[np.ndarray], object]


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
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
    patch_size = tuple(int(p) for p in patch_size)
    nd = len(patch_size)
    if array.ndim < nd:
        raise ValueError(f"array of shape {array.shape} has fewer than {nd} spatial axes")
    lead, spatial = array.shape[:-nd], array.shape[-nd:]
    before = [max(p - n, 0) // 2 for n, p in zip(spatial, patch_size)]
    padding = [(0, 0)] * len(lead) + [(b, max(p - n, 0) - b) for b, n, p in zip(before, spatial, patch_size)]
    padded = np.pad(array, padding, constant_values=pad_value) if any(sum(p) for p in padding) else array
    grid = padded.shape[-nd:]
    weights = gaussian_weights(patch_size, sigma_scale) if blend == "gaussian" else np.ones(patch_size, np.float32)
    total = np.zeros(grid, np.float32)
    out: np.ndarray | None = None
    for box in window_boxes(grid, patch_size, overlap):
        answer = _numpy(predict(np.ascontiguousarray(padded[(Ellipsis, *box)])))
        if answer.shape[-nd:] != patch_size:
            raise ValueError(f"the predictor returned shape {answer.shape} for a patch of size {patch_size}")
        if out is None:
            out = np.zeros(answer.shape[:-nd] + grid, np.float32)
        out[(Ellipsis, *box)] += answer * weights
        total[box] += weights
    assert out is not None  # window_boxes yields at least one window
    out /= total
    return out[(Ellipsis, *(slice(b, b + n) for b, n in zip(before, spatial)))]

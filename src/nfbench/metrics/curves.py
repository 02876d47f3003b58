"""Per-interaction curves: carrying early stops forward, area under the curve, NoC and NoF."""

from __future__ import annotations

import numpy as np

__all__ = ["carry_forward", "auc", "noc", "reached", "nof"]


def carry_forward(values: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill a curve that stopped early up to ``budget`` interactions with its last value.

    Returns the filled curve and a bool array flagging the carried entries. A curve longer than
    the budget is an error, as is an empty one (a session without any interaction has no curve).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("an empty curve cannot be carried forward")
    if values.size > budget:
        raise ValueError(f"curve has {values.size} interactions, more than the budget {budget}")
    filled = np.concatenate([values, np.full(budget - values.size, values[-1])])
    return filled, np.arange(budget) >= values.size


def auc(values: np.ndarray, *, normalise: bool) -> float:
    """Trapezoid area under a Dice curve over interactions 1..n (unit steps).

    ``normalise`` divides by ``n − 1`` so a curve at 1.0 throughout scores 1.0; a one-point curve
    gives its value either way.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("an empty curve has no area")
    if values.size == 1:
        return float(values[0])
    area = float(np.sum((values[1:] + values[:-1]) / 2.0))
    return area / (values.size - 1) if normalise else area


def reached(values: np.ndarray, threshold: float) -> bool:
    """Whether the curve reaches Dice ≥ ``threshold`` at some interaction."""
    return bool(np.any(np.asarray(values, dtype=float) >= threshold))


def noc(values: np.ndarray, threshold: float, budget: int) -> int:
    """Number of clicks: the first 1-based interaction with Dice ≥ ``threshold``, capped at ``budget``.

    A curve that never reaches the threshold scores ``budget`` (see :func:`reached` and
    :func:`nof` for counting those failures).
    """
    hits = np.flatnonzero(np.asarray(values, dtype=float) >= threshold)
    return int(min(hits[0] + 1, budget)) if hits.size else int(budget)


def nof(curves: list[np.ndarray] | np.ndarray, threshold: float) -> int:
    """Number of failures: how many curves never reach ``threshold`` (NaN entries never count)."""
    return sum(not reached(curve, threshold) for curve in curves)

"""Per-interaction curves: carrying early stops forward, area under the curve, NoC and NoF.

A curve is the Dice (or NSD) after interactions 1, 2, …, n, as a 1-D array; entry ``i`` belongs
to interaction ``i + 1``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["carry_forward", "auc", "noc", "reached", "nof"]


def _curve(values: np.ndarray | Iterable[float]) -> np.ndarray:
    curve = np.asarray(values, dtype=float)
    if curve.ndim != 1:
        raise ValueError(f"a curve must be one-dimensional, got shape {curve.shape}")
    return curve


def _check_budget(budget: int) -> int:
    if int(budget) != budget or budget < 1:
        raise ValueError(f"the budget must be a positive whole number of interactions, got {budget!r}")
    return int(budget)


def carry_forward(values: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill a curve that stopped early up to ``budget`` interactions with its last value.

    Curves of one setting then have one length, so they can be averaged and compared at every
    interaction; the flags let tables mark the carried entries.

    Returns
    -------
    filled : (budget,) float array
    carried : (budget,) bool array, True for the entries added here

    Raises
    ------
    ValueError
        For an empty curve (a session without any interaction has no value to carry) and for a
        curve longer than the budget.
    """
    budget = _check_budget(budget)
    curve = _curve(values)
    if curve.size == 0:
        raise ValueError("an empty curve cannot be carried forward")
    if curve.size > budget:
        raise ValueError(f"curve has {curve.size} interactions, more than the budget {budget}")
    filled = np.concatenate([curve, np.full(budget - curve.size, curve[-1])])
    return filled, np.arange(budget) >= curve.size


def auc(values: np.ndarray, *, normalise: bool) -> float:
    """Trapezoid area under a curve over interactions 1..n (unit steps).

    ``normalise`` divides by ``n − 1``, the width of the curve, so a curve at 1.0 throughout
    scores 1.0 and curves of different budgets share the [0, 1] scale. A one-point curve has no
    width: its value is returned either way. Carry early-stopped curves forward first, or their
    area is not comparable with the others'.
    """
    curve = _curve(values)
    if curve.size == 0:
        raise ValueError("an empty curve has no area")
    if curve.size == 1:
        return float(curve[0])
    area = float(np.sum((curve[1:] + curve[:-1]) / 2.0))
    return area / (curve.size - 1) if normalise else area


def reached(values: np.ndarray, threshold: float) -> bool:
    """Whether the curve reaches ``≥ threshold`` at some interaction (NaN never does)."""
    return bool(np.any(_curve(values) >= threshold))


def noc(values: np.ndarray, threshold: float, budget: int) -> int:
    """Number of clicks: the first 1-based interaction with value ≥ ``threshold``, capped at ``budget``.

    A curve that never reaches the threshold scores ``budget`` (DESIGN §2); use :func:`reached`
    per curve or :func:`nof` over curves to count those failures, which NoC alone hides.
    """
    budget = _check_budget(budget)
    hits = np.flatnonzero(_curve(values) >= threshold)
    return int(min(hits[0] + 1, budget)) if hits.size else budget


def nof(curves: Iterable[np.ndarray], threshold: float) -> int:
    """Number of failures: how many curves never reach ``threshold``.

    ``curves`` is any iterable of 1-D curves (a list of arrays of different lengths, or the rows of
    a 2-D array).
    """
    return sum(not reached(curve, threshold) for curve in curves)

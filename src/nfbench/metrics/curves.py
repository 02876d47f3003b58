"""Per-interaction curves: area under the curve, NoC, and whether a level is reached (NoF counts the
curves that never reach it).

A curve is the Dice (or NSD) after interactions 1, 2, …, n, as a 1-D array; entry ``i`` belongs
to interaction ``i + 1``. Many curves are a 2-D array, one curve per row. Every function takes
either form: a 1-D curve gives a Python scalar, a 2-D array one value per row (a NumPy array).
The engine writes every session with one value per interaction up to its budget (the values
after an early stop repeat the last one, see :mod:`nfbench.interaction.loop`), so curves of one
protocol have one length; a NaN is a value that was not measured and never reaches a threshold.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["auc", "noc", "reached"]


def _curves(values: np.ndarray | Iterable[float]) -> tuple[np.ndarray, bool]:
    """The curves as a 2-D float array (one per row) and whether a single 1-D curve was given."""
    curves = np.asarray(values, dtype=float)
    if curves.ndim not in (1, 2):
        raise ValueError(f"curves must be a 1-D curve or a 2-D array of curves, got shape {curves.shape}")
    return np.atleast_2d(curves), curves.ndim == 1


def _check_budget(budget: int) -> int:
    if int(budget) != budget or budget < 1:
        raise ValueError(f"the budget must be a positive whole number of interactions, got {budget!r}")
    return int(budget)


def auc(values: np.ndarray, *, normalise: bool) -> float | np.ndarray:
    """Trapezoid area under curves over interactions 1..n (unit steps).

    ``normalise`` divides by ``n − 1``, the width of the curve, so a curve at 1.0 throughout
    scores 1.0 and curves of different budgets share the [0, 1] scale. A one-point curve has no
    width: its value is returned either way. A curve with a NaN has NaN area.
    """
    curves, single = _curves(values)
    if curves.shape[1] == 0:
        raise ValueError("an empty curve has no area")
    if curves.shape[1] == 1:
        area = curves[:, 0].copy()
    else:
        area = np.sum((curves[:, 1:] + curves[:, :-1]) / 2.0, axis=1)
        if normalise:
            area /= curves.shape[1] - 1
    return float(area[0]) if single else area


def reached(values: np.ndarray, threshold: float) -> bool | np.ndarray:
    """Whether a curve reaches ``≥ threshold`` at some interaction (NaN never does)."""
    curves, single = _curves(values)
    hit = np.any(curves >= threshold, axis=1)
    return bool(hit[0]) if single else hit


def noc(values: np.ndarray, threshold: float, budget: int) -> int | np.ndarray:
    """Number of clicks: the first 1-based interaction with value ≥ ``threshold``, capped at ``budget``.

    A curve that never reaches the threshold scores ``budget`` (DESIGN §2: "capped at the
    budget"), the same as one that reaches it at the last interaction; use :func:`reached` per
    curve to count those failures (the reports' NoF@X: lesions whose ``reached_X`` is false), which
    NoC alone hides.
    """
    budget = _check_budget(budget)
    curves, single = _curves(values)
    hits = curves >= threshold
    first = np.where(hits.any(axis=1), np.argmax(hits, axis=1) + 1, budget)
    counts = np.minimum(first, budget)
    return int(counts[0]) if single else counts



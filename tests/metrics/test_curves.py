from __future__ import annotations

import math

import numpy as np
import pytest

from nfbench.metrics.curves import auc, noc, reached


def test_auc_trapezoid_raw_and_normalised():
    assert auc([0.2, 0.6, 1.0], normalise=False) == pytest.approx(0.4 + 0.8)
    assert auc([0.2, 0.6, 1.0], normalise=True) == pytest.approx(0.6)
    assert auc([1.0, 1.0, 1.0, 1.0], normalise=True) == 1.0
    assert auc([1.0, 1.0, 1.0, 1.0], normalise=False) == 3.0
    assert auc([0.7], normalise=True) == auc([0.7], normalise=False) == 0.7
    with pytest.raises(ValueError, match="empty"):
        auc([], normalise=True)


def test_auc_of_an_early_stopped_curve_counts_the_padded_part():
    padded = [0.4, 0.8, 0.8, 0.8]  # stopped after 2 of 4 interactions, padded by the engine
    assert auc(padded, normalise=False) == pytest.approx(0.6 + 0.8 + 0.8)
    assert auc(padded, normalise=True) == pytest.approx((0.6 + 0.8 + 0.8) / 3)
    assert math.isnan(auc([0.4, 0.8, math.nan], normalise=True))


def test_noc_and_reached():
    curve = [0.5, 0.82, 0.88, 0.95]
    assert [noc(curve, x, 4) for x in (0.8, 0.85, 0.9)] == [2, 3, 4]
    assert noc(curve, 0.5, 4) == 1  # ≥, not >
    assert noc([0.1, 0.2], 0.8, 3) == 3 and not reached([0.1, 0.2], 0.8)
    assert reached(curve, 0.95) and not reached(curve, 0.96)


def test_noc_on_an_early_stopped_curve():
    filled = [0.3, 0.86, 0.86, 0.86, 0.86]
    assert noc(filled, 0.85, 5) == 2 and noc(filled, 0.9, 5) == 5 and not reached(filled, 0.9)


def test_nan_never_reaches():
    assert not reached([math.nan, math.nan], 0.0)
    assert noc([math.nan, 0.9], 0.8, 3) == 2


def test_many_curves_at_once_match_one_by_one():
    rows = np.array([[0.5, 0.82, 0.88, 0.95, 0.95], [0.3, 0.86, 0.86, 0.86, 0.86],
                     [0.1, 0.1, 0.1, 0.1, 0.1], [0.2, 0.3, 0.4, 0.4, 0.4]])
    for r, row in enumerate(rows):
        assert auc(rows, normalise=True)[r] == pytest.approx(auc(row, normalise=True))
        assert auc(rows, normalise=False)[r] == pytest.approx(auc(row, normalise=False))
        for x in (0.8, 0.85, 0.9):
            assert noc(rows, x, 5)[r] == noc(row, x, 5)
            assert reached(rows, x)[r] == reached(row, x)
    np.testing.assert_array_equal(noc(rows, 0.85, 5), [3, 2, 5, 5])
    np.testing.assert_array_equal(reached(rows, 0.85), [True, True, False, False])
    # (0.3 + 0.86) / 2 + 3 × 0.86 = 3.16 over a width of 4
    assert auc(rows, normalise=True)[1] == pytest.approx(3.16 / 4)
    with pytest.raises(ValueError, match="1-D curve or a 2-D array"):
        auc(np.ones((2, 2, 2)), normalise=True)
    with pytest.raises(ValueError, match="budget"):
        noc(np.ones(1), 0.5, 0)

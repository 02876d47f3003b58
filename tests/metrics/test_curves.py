from __future__ import annotations

import math

import numpy as np
import pytest

from nfbench.metrics.curves import auc, carry_forward, noc, nof, reached


def test_carry_forward_fills_and_flags_an_early_stop():
    filled, flags = carry_forward(np.array([0.5, 0.9]), 4)
    np.testing.assert_array_equal(filled, [0.5, 0.9, 0.9, 0.9])
    np.testing.assert_array_equal(flags, [False, False, True, True])
    filled, flags = carry_forward([0.1, 0.2, 0.3], 3)  # a full curve is left as it is
    np.testing.assert_array_equal(filled, [0.1, 0.2, 0.3])
    assert not flags.any()


def test_carry_forward_rejects_bad_curves():
    with pytest.raises(ValueError, match="more than the budget"):
        carry_forward(np.ones(5), 4)
    with pytest.raises(ValueError, match="empty"):
        carry_forward(np.array([]), 3)
    with pytest.raises(ValueError, match="budget"):
        carry_forward(np.ones(1), 0)
    with pytest.raises(ValueError, match="1-D curve or a 2-D array"):
        carry_forward(np.ones((2, 2, 2)), 4)
    with pytest.raises(ValueError, match="empty"):
        carry_forward(np.array([[0.5, np.nan], [np.nan, np.nan]]), 3)  # a row without any value


def test_auc_trapezoid_raw_and_normalised():
    assert auc([0.2, 0.6, 1.0], normalise=False) == pytest.approx(0.4 + 0.8)
    assert auc([0.2, 0.6, 1.0], normalise=True) == pytest.approx(0.6)
    assert auc([1.0, 1.0, 1.0, 1.0], normalise=True) == 1.0
    assert auc([1.0, 1.0, 1.0, 1.0], normalise=False) == 3.0
    assert auc([0.7], normalise=True) == auc([0.7], normalise=False) == 0.7
    with pytest.raises(ValueError, match="empty"):
        auc([], normalise=True)


def test_auc_of_an_early_stopped_curve_counts_the_carried_part():
    filled, _ = carry_forward([0.4, 0.8], 4)  # stopped after 2 of 4 interactions
    assert auc(filled, normalise=False) == pytest.approx(0.6 + 0.8 + 0.8)
    assert auc(filled, normalise=True) == pytest.approx((0.6 + 0.8 + 0.8) / 3)


def test_noc_reached_and_nof():
    curve = [0.5, 0.82, 0.88, 0.95]
    assert [noc(curve, x, 4) for x in (0.8, 0.85, 0.9)] == [2, 3, 4]
    assert noc(curve, 0.5, 4) == 1  # ≥, not >
    assert noc([0.1, 0.2], 0.8, 3) == 3 and not reached([0.1, 0.2], 0.8)
    assert reached(curve, 0.95) and not reached(curve, 0.96)
    assert nof([np.array(curve), np.array([0.1, 0.2]), np.array([0.9])], 0.85) == 1
    assert nof(np.array([[0.1, 0.9], [0.2, 0.3]]), 0.85) == 1  # rows of a 2-D array


def test_noc_on_an_early_stopped_curve():
    filled, _ = carry_forward([0.3, 0.86], 5)
    assert noc(filled, 0.85, 5) == 2 and noc(filled, 0.9, 5) == 5 and not reached(filled, 0.9)


def test_nan_never_reaches():
    assert not reached([math.nan, math.nan], 0.0)
    assert noc([math.nan, 0.9], 0.8, 3) == 2


def test_trailing_nan_is_padding_of_an_early_stop():
    filled, flags = carry_forward([0.4, 0.9, math.nan], 4)
    np.testing.assert_array_equal(filled, [0.4, 0.9, 0.9, 0.9])
    np.testing.assert_array_equal(flags, [False, False, True, True])


def test_many_nan_padded_curves_at_once_match_one_by_one():
    rows = [[0.5, 0.82, 0.88, 0.95], [0.3, 0.86], [0.1], [0.2, 0.3, 0.4]]
    padded = np.full((len(rows), 4), math.nan)
    for r, row in enumerate(rows):
        padded[r, : len(row)] = row
    filled, flags = carry_forward(padded, 5)
    assert filled.shape == flags.shape == (4, 5)
    for r, row in enumerate(rows):
        one, one_flags = carry_forward(np.array(row), 5)
        np.testing.assert_array_equal(filled[r], one)
        np.testing.assert_array_equal(flags[r], one_flags)
        assert auc(filled, normalise=True)[r] == pytest.approx(auc(one, normalise=True))
        assert auc(filled, normalise=False)[r] == pytest.approx(auc(one, normalise=False))
        for x in (0.8, 0.85, 0.9):
            assert noc(filled, x, 5)[r] == noc(one, x, 5)
            assert reached(filled, x)[r] == reached(one, x)
    np.testing.assert_array_equal(noc(filled, 0.85, 5), [3, 2, 5, 5])
    np.testing.assert_array_equal(reached(padded, 0.85), [True, True, False, False])
    assert nof(padded, 0.85) == 2 and nof(list(map(np.array, rows)), 0.85) == 2
    assert np.isnan(auc(padded, normalise=True)[1])  # padding must be carried forward first
    with pytest.raises(ValueError, match="2-D array"):
        nof(np.ones(3), 0.5)

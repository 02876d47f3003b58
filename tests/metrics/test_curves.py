from __future__ import annotations

import numpy as np
import pytest

from nfbench.metrics.curves import auc, carry_forward, noc, nof, reached


def test_carry_forward_fills_and_flags():
    filled, flags = carry_forward(np.array([0.5, 0.9]), 4)
    np.testing.assert_array_equal(filled, [0.5, 0.9, 0.9, 0.9])
    np.testing.assert_array_equal(flags, [False, False, True, True])
    with pytest.raises(ValueError, match="more than the budget"):
        carry_forward(np.ones(5), 4)
    with pytest.raises(ValueError, match="empty"):
        carry_forward(np.array([]), 3)


def test_auc_trapezoid_raw_and_normalised():
    assert auc([0.2, 0.6, 1.0], normalise=False) == pytest.approx(0.4 + 0.8)
    assert auc([0.2, 0.6, 1.0], normalise=True) == pytest.approx(0.6)
    assert auc([1.0, 1.0, 1.0, 1.0], normalise=True) == 1.0
    assert auc([0.7], normalise=True) == 0.7


def test_noc_nof_and_reached():
    curve = [0.5, 0.82, 0.88, 0.95]
    assert [noc(curve, x, 4) for x in (0.8, 0.85, 0.9)] == [2, 3, 4]
    assert noc([0.1, 0.2], 0.8, 3) == 3 and not reached([0.1, 0.2], 0.8)
    assert nof([np.array(curve), np.array([0.1, 0.2])], 0.85) == 1

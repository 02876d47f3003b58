from __future__ import annotations

import numpy as np
import pytest

from nfbench.metrics.overlap import dice, dice_from_counts


def test_hand_checked_dice():
    pred = np.array([[[1, 1], [1, 0]]], bool)
    truth = np.array([[[1, 1], [0, 0]]], bool)
    assert dice(pred, truth) == pytest.approx(0.8)  # 2·2 / (3 + 2)


def test_empty_conventions():
    empty = np.zeros((2, 2, 2), bool)
    one = empty.copy()
    one[0, 0, 0] = True
    assert dice(empty, empty) == 1.0
    assert dice(one, empty) == 0.0
    assert dice(empty, one) == 0.0
    assert dice_from_counts(0, 0, 0) == 1.0


def test_ignored_voxels_count_for_neither_side():
    truth = np.zeros((1, 1, 6), bool)
    truth[..., :2] = True
    pred = truth.copy()
    pred[..., 4:] = True  # another lesion's voxels, which are ignored
    ignore = np.zeros_like(truth)
    ignore[..., 4:] = True
    assert dice(pred, truth) == pytest.approx(2 * 2 / 6)
    assert dice(pred, truth, ignore=ignore) == 1.0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2, 2\) differs from truth shape \(2, 2, 3\)"):
        dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))

from __future__ import annotations

import numpy as np
import pytest

from nfbench.metrics.overlap import dice, dice_from_counts, overlap_counts


def test_hand_checked_dice():
    pred = np.array([[[1, 1], [1, 0]]], bool)
    truth = np.array([[[1, 1], [0, 0]]], bool)
    assert dice(pred, truth) == pytest.approx(0.8)  # 2·2 / (3 + 2)
    assert dice(truth, pred) == pytest.approx(0.8)
    assert dice(pred, pred) == 1.0
    assert dice(pred, ~pred) == 0.0


def test_non_bool_masks_read_as_nonzero():
    pred = np.array([[[2, 1], [3, 0]]], np.uint8)  # 2 & 1 would be 0 bitwise
    truth = np.array([[[1, 1], [0, 0]]], np.uint8)
    assert dice(pred, truth) == pytest.approx(0.8)


def test_overlap_counts_give_the_voxel_wise_errors():
    pred = np.array([[[1, 1], [1, 0]]], bool)
    truth = np.array([[[1, 0], [0, 1]]], bool)
    inter, n_pred, n_truth = overlap_counts(pred, truth)
    assert (inter, n_pred, n_truth) == (1, 3, 2)
    assert (n_pred - inter, n_truth - inter) == (2, 1)  # false-positive and false-negative voxels
    ignore = np.array([[[0, 1], [0, 0]]], bool)
    assert overlap_counts(pred, truth, ignore=ignore) == (1, 2, 2)
    assert dice(pred, truth) == dice_from_counts(1, 3, 2)


def test_empty_conventions():
    empty = np.zeros((2, 2, 2), bool)
    one = empty.copy()
    one[0, 0, 0] = True
    assert dice(empty, empty) == 1.0
    assert dice(one, empty) == 0.0
    assert dice(empty, one) == 0.0
    assert dice_from_counts(0, 0, 0) == 1.0
    assert dice_from_counts(0, 5, 0) == 0.0
    assert dice_from_counts(2, 3, 2) == pytest.approx(0.8)


def test_inconsistent_counts_are_rejected():
    with pytest.raises(ValueError, match="inconsistent"):
        dice_from_counts(3, 2, 5)
    with pytest.raises(ValueError, match="inconsistent"):
        dice_from_counts(0, -1, 5)


def test_ignored_voxels_count_for_neither_side():
    truth = np.zeros((1, 1, 6), bool)
    truth[..., :2] = True
    pred = truth.copy()
    pred[..., 4:] = True  # another lesion's voxels, which are ignored
    ignore = np.zeros_like(truth)
    ignore[..., 4:] = True
    assert dice(pred, truth) == pytest.approx(2 * 2 / 6)
    assert dice(pred, truth, ignore=ignore) == 1.0
    truth_in_ignore = truth.copy()
    truth_in_ignore[..., 4] = True  # ignored on the truth side too
    assert dice(pred, truth_in_ignore, ignore=ignore) == 1.0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2, 2\) differs from truth shape \(2, 2, 3\)"):
        dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))
    with pytest.raises(ValueError, match=r"ignore shape \(1, 2, 2\)"):
        dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), ignore=np.zeros((1, 2, 2), bool))

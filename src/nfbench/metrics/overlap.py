"""Volume overlap: Dice with an explicit convention for empty masks."""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "dice_from_counts"]


def dice_from_counts(intersection: int, pred_count: int, truth_count: int) -> float:
    """Dice from voxel counts, so callers can keep running counts and update them from crops.

    Empty truth and empty prediction give 1.0; empty truth with a non-empty prediction gives 0.0.
    """
    total = pred_count + truth_count
    if total == 0:
        return 1.0
    return 2.0 * intersection / total


def dice(pred: np.ndarray, truth: np.ndarray, *, ignore: np.ndarray | None = None) -> float:
    """Dice coefficient of two bool masks of the same shape.

    Parameters
    ----------
    pred, truth : (M, N, P) bool arrays
    ignore : (M, N, P) bool array, optional
        Voxels left out of both masks (for example other lesions when one lesion is scored).

    Returns
    -------
    float
        ``2 |P ∩ T| / (|P| + |T|)``; 1.0 when both are empty, 0.0 when only the truth is empty.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    if ignore is not None:
        if ignore.shape != truth.shape:
            raise ValueError(f"ignore shape {ignore.shape} differs from truth shape {truth.shape}")
        keep = ~ignore
        pred, truth = pred & keep, truth & keep
    return dice_from_counts(int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred)), int(np.count_nonzero(truth)))

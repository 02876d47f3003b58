"""Volume overlap: Dice with an explicit convention for empty masks."""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "dice_from_counts", "overlap_counts"]


def dice_from_counts(intersection: int, pred_count: int, truth_count: int) -> float:
    """Dice from voxel counts, so callers can keep running counts and update them from crops.

    Empty truth and empty prediction give 1.0 (nothing to find, nothing found); empty truth with a
    non-empty prediction gives 0.0, as does any prediction that misses a non-empty truth.
    """
    if min(intersection, pred_count, truth_count) < 0 or intersection > min(pred_count, truth_count):
        raise ValueError(
            f"inconsistent voxel counts: intersection {intersection}, prediction {pred_count}, truth {truth_count}"
        )
    total = pred_count + truth_count
    if total == 0:
        return 1.0
    return 2.0 * intersection / total


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def overlap_counts(
    pred: np.ndarray, truth: np.ndarray, *, ignore: np.ndarray | None = None
) -> tuple[int, int, int]:
    """``(|P ∩ T|, |P|, |T|)`` of two masks of the same shape (non-zero = foreground).

    The counts Dice is made of; they also give the voxel-wise errors (false positives
    ``|P| - |P ∩ T|``, false negatives ``|T| - |P ∩ T|``) without another pass over the masks.
    ``ignore`` (a bool mask of the same shape) leaves its voxels out of both masks. Counts use
    ``np.count_nonzero`` (about 100× faster than ``.sum()`` on bool arrays).
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    pred, truth = _as_bool(pred), _as_bool(truth)
    if ignore is not None:
        if ignore.shape != truth.shape:
            raise ValueError(f"ignore shape {ignore.shape} differs from truth shape {truth.shape}")
        keep = ~_as_bool(ignore)
        pred, truth = pred & keep, truth & keep
    return int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred)), int(np.count_nonzero(truth))


def dice(pred: np.ndarray, truth: np.ndarray, *, ignore: np.ndarray | None = None) -> float:
    """Dice coefficient of two masks of the same shape (non-zero = foreground).

    Parameters
    ----------
    pred, truth : (M, N, P) bool arrays (other dtypes are read as ``!= 0``)
    ignore : (M, N, P) bool array, optional
        Voxels left out of both masks (for example other lesions when one lesion is scored).

    Returns
    -------
    float
        ``2 |P ∩ T| / (|P| + |T|)``; 1.0 when both are empty, 0.0 when only the truth is empty.

    See Also
    --------
    overlap_counts : the voxel counts it is computed from
    """
    return dice_from_counts(*overlap_counts(pred, truth, ignore=ignore))

"""Lesion detection per scan: matching predicted components to true lesions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfbench.bbox import mask_bbox, union_bbox
from nfbench.components import connected_components

__all__ = ["Detection", "detection"]


@dataclass(frozen=True)
class Detection:
    """Counts and rates of one scan.

    ``tp``/``fn``: true lesions matched / not matched by a predicted component; ``fp``: predicted
    components matching no true lesion. ``recall = tp / (tp + fn)``;
    ``precision = matched components / all components`` (a lesion split in two still has two
    correct components); ``f1`` is their harmonic mean. With nothing to find and nothing found,
    precision, recall and F1 are 1.0; a rate whose denominator is zero otherwise is 0.0.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    fp_volume_ml: float
    fn_volume_ml: float


def _rate(num: int, den: int, *, nothing: bool) -> float:
    if den == 0:
        return 1.0 if nothing else 0.0
    return num / den


def detection(
    pred: np.ndarray, truth_instances: np.ndarray, *, spacing: tuple[float, float, float], iou_threshold: float = 0.0
) -> Detection:
    """Match the 26-connected components of ``pred`` to the lesions of ``truth_instances``.

    Parameters
    ----------
    pred : (M, N, P) bool array
    truth_instances : (M, N, P) integer array, 0 = background, each other value one lesion
    spacing : voxel size in mm (for the volumes)
    iou_threshold : 0.0 matches on any overlap; otherwise a pair matches when IoU ≥ the threshold

    Notes
    -----
    Overlaps of all pairs come from one pass over the voxels where both are non-zero, inside the
    bounding box of the two masks: the cost is linear in the voxels, never quadratic in the lesions.
    """
    if pred.shape != truth_instances.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth_instances.shape}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    box = union_bbox(mask_bbox(pred), mask_bbox(truth_instances))
    if box is None:
        return Detection(0, 0, 0, 1.0, 1.0, 1.0, 0.0, 0.0)
    truth = np.asarray(truth_instances[box], dtype=np.int64)
    components = connected_components(pred[box], connectivity=26)[0].astype(np.int64)
    truth_ids, truth_sizes = np.unique(truth[truth > 0], return_counts=True)
    n_comp = int(components.max())
    comp_sizes = np.bincount(components.ravel(), minlength=n_comp + 1)
    both = (truth > 0) & (components > 0)
    pairs, inter = np.unique(truth[both] * (n_comp + 1) + components[both], return_counts=True)
    pair_truth, pair_comp = pairs // (n_comp + 1), pairs % (n_comp + 1)
    if iou_threshold > 0:
        truth_size_of = dict(zip(truth_ids.tolist(), truth_sizes.tolist()))
        sizes_t = np.array([truth_size_of[t] for t in pair_truth.tolist()], dtype=np.int64)
        iou = inter / (sizes_t + comp_sizes[pair_comp] - inter)
        keep = iou >= iou_threshold
        pair_truth, pair_comp = pair_truth[keep], pair_comp[keep]
    matched_truth = np.isin(truth_ids, pair_truth)
    matched_comp = np.zeros(n_comp + 1, bool)
    matched_comp[pair_comp] = True
    tp, fn = int(matched_truth.sum()), int((~matched_truth).sum())
    n_matched_comp = int(matched_comp[1:].sum())
    fp = n_comp - n_matched_comp
    nothing = truth_ids.size == 0 and n_comp == 0
    precision = _rate(n_matched_comp, n_comp, nothing=nothing)
    recall = _rate(tp, tp + fn, nothing=nothing)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return Detection(
        tp, fp, fn, precision, recall, f1,
        fp_volume_ml=float(comp_sizes[1:][~matched_comp[1:]].sum()) * voxel_ml,
        fn_volume_ml=float(truth_sizes[~matched_truth].sum()) * voxel_ml,
    )

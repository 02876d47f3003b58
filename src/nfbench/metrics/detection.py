"""Lesion detection per scan: matching predicted components to true lesions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from nfbench.components import connected_components

__all__ = ["Detection", "detection"]


@dataclass(frozen=True)
class Detection:
    """Lesion-level counts and rates of one scan.

    ``tp``: true lesions matched by at least one predicted component; ``fn``: true lesions matched
    by none; ``fp``: predicted components matching no true lesion. ``recall = tp / (tp + fn)``;
    ``precision = matched components / all components`` (a lesion split in two blobs has two
    correct components; one blob covering two lesions is one correct component); ``f1`` is their
    harmonic mean (0.0 when both are 0). With nothing to find and nothing found, precision, recall
    and F1 are 1.0; otherwise a rate with a zero denominator is 0.0 (no truth and some prediction:
    recall 0.0; some truth and no prediction: precision 0.0). ``fp_volume_ml`` and
    ``fn_volume_ml`` are the volumes of the unmatched components and of the unmatched lesions.
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


def _nonzero_and_box(mask: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...] | None]:
    """Sorted flat indices of the non-zero voxels and their half-open bounding box (None when empty).

    Works through slabs of about 4 M voxels along axis 0 so the ``!= 0`` temporary stays small
    (a volume-sized one costs page faults: 0.25 s instead of 0.03 s on a fresh 72 M-voxel call).
    """
    step = max(1, _SLAB_VOXELS // max(1, int(np.prod(mask.shape[1:]))))
    per_slice = int(np.prod(mask.shape[1:]))
    parts = []
    for start in range(0, mask.shape[0], step):
        slab = mask[start:start + step]
        parts.append(np.flatnonzero(slab if slab.dtype == bool else slab != 0) + start * per_slice)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if flat.size == 0:
        return flat, None
    coords = np.unravel_index(flat, mask.shape)
    return flat, tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)


_SLAB_VOXELS = 1 << 22


# The 13 "forward" offsets of the 26-neighbourhood: each neighbour pair is found once.
_FORWARD = tuple(
    (i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) > (0, 0, 0)
)

# A prediction covering less than 1/_SPARSE_RATIO of its bounding box is labelled from its voxel
# list (a whole-body scan with scattered lesions); denser ones with cc3d on the box.
_SPARSE_RATIO = 128


def _sparse_components(flat: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """26-connected components of the voxels at the sorted flat indices ``flat``; labels from 1.

    Neighbour pairs come from 13 ``searchsorted`` look-ups, components from a sparse graph: the
    cost follows the number of foreground voxels, not the volume, and no volume-sized label array
    is allocated (cc3d on a 72 M-voxel box allocates ~300 MB and takes 0.2–0.7 s).
    """
    coords = np.unravel_index(flat, shape)
    rows, cols = [], []
    for offset in _FORWARD:
        moved = [c + o for c, o in zip(coords, offset)]
        inside = np.ones(flat.size, bool)
        for c, n in zip(moved, shape):
            inside &= (c >= 0) & (c < n)
        source = np.flatnonzero(inside)
        key = np.ravel_multi_index(tuple(c[inside] for c in moved), shape)
        position = np.minimum(np.searchsorted(flat, key), flat.size - 1)
        hit = flat[position] == key
        rows.append(source[hit])
        cols.append(position[hit])
    row, col = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(row.size, np.int8), (row, col)), shape=(flat.size, flat.size))
    n, labels = graph_components(graph, directed=False)
    return labels.astype(np.int64) + 1, int(n)


def detection(
    pred: np.ndarray,
    truth_instances: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    iou_threshold: float = 0.0,
) -> Detection:
    """Match the 26-connected components of ``pred`` to the lesions of ``truth_instances``.

    Parameters
    ----------
    pred : (M, N, P) bool array
    truth_instances : (M, N, P) integer array; 0 = background, every other value one lesion (its
        voxels need not be connected)
    spacing : voxel size in mm, for the volumes
    iou_threshold : 0.0 matches a lesion and a component on any overlap; a positive value matches
        them when their IoU is at least the threshold (so 0.1 means IoU ≥ 0.1)

    Notes
    -----
    Cost is linear in the voxels and never quadratic in the lesions: the non-zero voxels of both
    maps are listed once; the components are labelled with cc3d on the prediction's bounding box,
    or from the voxel list when the prediction is sparse in that box; every (lesion, component)
    overlap comes from one ``np.unique`` over a combined 64-bit key of the voxels where both are
    non-zero, and the sizes from the voxel lists. An 800×31×2900 scan with 200 lesions takes about
    0.1 s (2 CPU cores).
    """
    if pred.shape != truth_instances.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth_instances.shape}")
    if pred.ndim != 3:
        raise ValueError(f"detection needs 3D maps, got shape {pred.shape}")
    if truth_instances.dtype.kind not in "biu":
        raise ValueError(f"truth instances must be an integer map, got dtype {truth_instances.dtype}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0

    truth_flat, truth_box = _nonzero_and_box(truth_instances)
    pred_flat, pred_box = _nonzero_and_box(pred)
    truth_values = truth_instances.ravel()[truth_flat].astype(np.int64)
    if truth_values.size and truth_values.min() < 0:
        raise ValueError(f"truth instances must be non-negative, found id {int(truth_values.min())}")
    truth_ids, truth_sizes = np.unique(truth_values, return_counts=True)
    if pred_box is None:
        n_truth = int(truth_ids.size)
        nothing = n_truth == 0
        return Detection(
            0, 0, n_truth, _rate(0, 0, nothing=nothing), _rate(0, n_truth, nothing=nothing),
            1.0 if nothing else 0.0, 0.0, float(truth_sizes.sum()) * voxel_ml,
        )

    box_size = int(np.prod([b.stop - b.start for b in pred_box]))
    if pred_flat.size * _SPARSE_RATIO < box_size:
        pred_labels, n_comp = _sparse_components(pred_flat, pred.shape)

        def labels_at(flat: np.ndarray) -> np.ndarray:
            position = np.minimum(np.searchsorted(pred_flat, flat), pred_flat.size - 1)
            return np.where(pred_flat[position] == flat, pred_labels[position], 0)
    else:
        # Components on the prediction's box (components never reach outside it).
        labels, n_comp = connected_components(np.asarray(pred[pred_box], dtype=bool), connectivity=26)
        starts = np.array([b.start for b in pred_box])

        def labels_at(flat: np.ndarray) -> np.ndarray:
            coords = np.stack(np.unravel_index(flat, pred.shape), axis=1) - starts
            inside = np.all((coords >= 0) & (coords < labels.shape), axis=1)
            out = np.zeros(flat.size, np.int64)
            out[inside] = labels[tuple(coords[inside].T)]
            return out

    comp_sizes = np.bincount(labels_at(pred_flat), minlength=n_comp + 1)
    comp_of_truth = labels_at(truth_flat) if truth_box is not None else np.zeros(0, np.int64)
    both = comp_of_truth > 0
    key = truth_values[both] * (n_comp + 1) + comp_of_truth[both]
    pairs, inter = np.unique(key, return_counts=True)
    pair_truth, pair_comp = pairs // (n_comp + 1), pairs % (n_comp + 1)
    if iou_threshold > 0:
        size_t = truth_sizes[np.searchsorted(truth_ids, pair_truth)]
        iou = inter / (size_t + comp_sizes[pair_comp] - inter)
        keep = iou >= iou_threshold
        pair_truth, pair_comp = pair_truth[keep], pair_comp[keep]

    matched_truth = np.isin(truth_ids, pair_truth)
    matched_comp = np.zeros(n_comp + 1, bool)
    matched_comp[pair_comp] = True
    matched_comp[0] = False
    tp = int(np.count_nonzero(matched_truth))
    fn = int(truth_ids.size) - tp
    n_matched_comp = int(np.count_nonzero(matched_comp))
    precision = n_matched_comp / n_comp
    recall = _rate(tp, tp + fn, nothing=False)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    unmatched_comp = ~matched_comp
    unmatched_comp[0] = False
    return Detection(
        tp=tp,
        fp=n_comp - n_matched_comp,
        fn=fn,
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        fp_volume_ml=float(comp_sizes[unmatched_comp].sum()) * voxel_ml,
        fn_volume_ml=float(truth_sizes[~matched_truth].sum()) * voxel_ml,
    )

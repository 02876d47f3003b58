"""Lesion detection per scan: matching predicted components to true lesions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from nfbench.components import connected_components
from nfbench.lesions import voxel_volume_ml
from nfbench.types import Spacing

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
    ``fn_volume_ml`` are the volumes of the unmatched components and of the unmatched lesions,
    whole: a matched component's leak outside its lesion is in neither (the voxel-wise errors come
    from the scan Dice's counts, :func:`nfbench.metrics.overlap.overlap_counts`).
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


def _components_at(mask: np.ndarray, flat: np.ndarray, box: tuple[slice, ...]) -> tuple[np.ndarray, int]:
    """26-connected component label (1..n) of each voxel at the sorted flat indices ``flat``.

    A mask covering less than 1/_SPARSE_RATIO of its bounding box ``box`` is labelled from its
    voxel list, a denser one with cc3d on the box (components never reach outside it).
    """
    box_size = int(np.prod([b.stop - b.start for b in box]))
    if flat.size * _SPARSE_RATIO < box_size:
        return _sparse_components(flat, mask.shape)
    labels, n = connected_components(np.asarray(mask[box], dtype=bool), connectivity=26)
    coords = np.unravel_index(flat, mask.shape)
    return labels[tuple(c - b.start for c, b in zip(coords, box))].astype(np.int64), n


def detection(
    pred: np.ndarray,
    truth_instances: np.ndarray,
    *,
    affine: np.ndarray | None = None,
    spacing: Spacing | None = None,
    iou_threshold: float = 0.0,
) -> Detection:
    """Match the 26-connected components of ``pred`` to the lesions of ``truth_instances``.

    Parameters
    ----------
    pred : (M, N, P) bool array (other dtypes are read as ``!= 0``)
    truth_instances : (M, N, P) integer or bool array
        An integer map is an instance map: 0 = background, every other value one lesion (its
        voxels need not be connected). A bool mask is split into its 26-connected components.
        An integer 0/1 label is one lesion: pass binary labels as bool, or through
        :func:`nfbench.lesions.instance_map`.
    affine : (4, 4) array, the grid's voxel-to-mm affine; volumes use
        :func:`nfbench.lesions.voxel_volume_ml` of it
    spacing : voxel size in mm of an axis-aligned grid, instead of ``affine`` (the same as
        ``affine=np.diag([*spacing, 1])``); give exactly one of the two
    iou_threshold : 0.0 matches a lesion and a component on any overlap; a positive value matches
        them when their IoU is at least the threshold (so 0.1 means IoU ≥ 0.1)

    Notes
    -----
    Cost is linear in the foreground voxels and never quadratic in the lesions: the non-zero
    voxels of both maps are listed once (slab by slab); components are labelled with cc3d on the
    mask's bounding box, or from the voxel list when the mask is sparse in that box; every
    (lesion, component) overlap comes from one ``np.unique`` over a combined key of the voxels
    where both are non-zero, and the sizes from bincounts of the voxel lists. An 800×31×2900
    scan with 200 lesions takes about 0.1 s (2 CPU cores).
    """
    if pred.shape != truth_instances.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth_instances.shape}")
    if pred.ndim != 3:
        raise ValueError(f"detection needs 3D maps, got shape {pred.shape}")
    if truth_instances.dtype.kind not in "biu":
        raise ValueError(f"truth instances must be an integer map or a bool mask, got dtype {truth_instances.dtype}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if (affine is None) == (spacing is None):
        raise ValueError("give the grid as exactly one of affine and spacing, for the volumes")
    voxel_ml = voxel_volume_ml(np.diag([*spacing, 1.0]) if affine is None else affine)  # type: ignore[list-item]

    truth_flat, truth_box = _nonzero_and_box(truth_instances)
    pred_flat, pred_box = _nonzero_and_box(pred)
    if truth_box is None:
        truth_values = np.zeros(0, np.int64)
    elif truth_instances.dtype == bool:
        truth_values, _ = _components_at(truth_instances, truth_flat, truth_box)
    else:
        truth_values = truth_instances.ravel()[truth_flat].astype(np.int64)
        if truth_values.min() < 0:
            raise ValueError(f"truth instances must be non-negative, found id {int(truth_values.min())}")
    # Lesions by rank 0..L-1 (ids may be large and sparse), with their sizes.
    truth_ids, truth_rank, truth_sizes = np.unique(truth_values, return_inverse=True, return_counts=True)
    n_truth = int(truth_ids.size)
    if pred_box is None:
        nothing = n_truth == 0
        return Detection(
            0, 0, n_truth, _rate(0, 0, nothing=nothing), _rate(0, n_truth, nothing=nothing),
            1.0 if nothing else 0.0, 0.0, float(truth_sizes.sum()) * voxel_ml,
        )

    pred_labels, n_comp = _components_at(pred, pred_flat, pred_box)
    comp_sizes = np.bincount(pred_labels, minlength=n_comp + 1)
    # The component under each truth voxel (0 = none): a sorted look-up in the prediction's voxels.
    position = np.minimum(np.searchsorted(pred_flat, truth_flat), pred_flat.size - 1)
    comp_of_truth = np.where(pred_flat[position] == truth_flat, pred_labels[position], 0)
    both = comp_of_truth > 0
    key = truth_rank[both] * (n_comp + 1) + comp_of_truth[both]
    pairs, inter = np.unique(key, return_counts=True)
    pair_truth, pair_comp = pairs // (n_comp + 1), pairs % (n_comp + 1)
    if iou_threshold > 0:
        iou = inter / (truth_sizes[pair_truth] + comp_sizes[pair_comp] - inter)
        keep = iou >= iou_threshold
        pair_truth, pair_comp = pair_truth[keep], pair_comp[keep]

    matched_truth = np.zeros(n_truth, bool)
    matched_truth[pair_truth] = True
    matched_comp = np.zeros(n_comp + 1, bool)
    matched_comp[pair_comp] = True
    tp = int(np.count_nonzero(matched_truth))
    n_matched_comp = int(np.count_nonzero(matched_comp))
    precision = n_matched_comp / n_comp
    recall = _rate(tp, n_truth, nothing=False)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    unmatched_comp = ~matched_comp
    unmatched_comp[0] = False
    return Detection(
        tp=tp,
        fp=n_comp - n_matched_comp,
        fn=n_truth - tp,
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        fp_volume_ml=float(comp_sizes[unmatched_comp].sum()) * voxel_ml,
        fn_volume_ml=float(truth_sizes[~matched_truth].sum()) * voxel_ml,
    )

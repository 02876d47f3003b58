"""Surface metrics: normalised surface Dice (NSD) at a tolerance in mm, and HD95.

Surface definition (the one of DeepMind's ``surface-distance`` package, Nikolov et al. 2021,
arXiv:1809.04430): the surface is made of surfels on the grid shifted by half a voxel; each corner
of the voxel grid whose 2×2×2 neighbourhood is neither empty nor full is a surface point, weighted
by the area (mm², with the voxel spacing) of the marching-cubes surface inside that neighbourhood;
the area table is taken from that package so that both give the same numbers. Distances are
Euclidean in mm from each surface point of one mask to the nearest surface point of the other.

Everything is computed on the bounding box of prediction ∪ truth grown by one voxel, which holds
every surface point and therefore gives the same result as the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from surface_distance.lookup_tables import create_table_neighbour_code_to_surface_area

from nfbench.bbox import mask_bbox

__all__ = ["SurfaceMetrics", "surface_metrics", "surface_distances"]

# Bit weights of the eight voxels of a 2×2×2 neighbourhood (the package's encoding).
_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]], dtype=np.uint8)


@dataclass(frozen=True)
class SurfaceMetrics:
    """NSD in [0, 1] and the 95th-percentile Hausdorff distance in mm.

    Both empty: NSD 1.0, HD95 0.0. One empty: NSD 0.0, HD95 ``inf``.
    """

    nsd: float
    hd95_mm: float


@lru_cache(maxsize=32)
def _area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    return create_table_neighbour_code_to_surface_area(spacing)


def _surface(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    codes = ndimage.correlate(mask.astype(np.uint8), _KERNEL, mode="constant", cval=0)
    border = (codes != 0) & (codes != 255)
    return border, _area_table(spacing)[codes]


def surface_distances(pred: np.ndarray, truth: np.ndarray, *, spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Distances (mm) and areas (mm²) of the surface points of each mask to the other surface.

    Keys: ``truth_to_pred``, ``pred_to_truth``, ``truth_areas``, ``pred_areas`` (unsorted).
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    spacing = tuple(float(s) for s in spacing)
    box = mask_bbox(pred | truth) if pred.size else None
    if box is None:
        empty = np.zeros(0)
        return {"truth_to_pred": empty, "pred_to_truth": empty, "truth_areas": empty, "pred_areas": empty}
    # One voxel of zeros after the box: the neighbourhood codes look one voxel forward.
    crop = tuple(slice(s.start, s.stop) for s in box)
    shape = tuple(s.stop - s.start + 1 for s in box)
    masks = []
    for mask in (pred, truth):
        padded = np.zeros(shape, bool)
        padded[tuple(slice(0, s.stop - s.start) for s in box)] = mask[crop]
        masks.append(padded)
    (pred_border, pred_area), (truth_border, truth_area) = (_surface(m, spacing) for m in masks)

    def distance_to(border: np.ndarray) -> np.ndarray:
        if not border.any():
            return np.full(border.shape, np.inf)
        return ndimage.distance_transform_edt(~border, sampling=spacing)

    return {
        "truth_to_pred": distance_to(pred_border)[truth_border],
        "pred_to_truth": distance_to(truth_border)[pred_border],
        "truth_areas": truth_area[truth_border],
        "pred_areas": pred_area[pred_border],
    }


def _percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if distances.size == 0:
        return np.inf
    order = np.lexsort((areas, distances))
    cumulative = np.cumsum(areas[order]) / np.sum(areas)
    index = min(int(np.searchsorted(cumulative, percent / 100.0)), distances.size - 1)
    return float(distances[order][index])


def surface_metrics(
    pred: np.ndarray, truth: np.ndarray, *, spacing: tuple[float, float, float], tolerance_mm: float = 2.0
) -> SurfaceMetrics:
    """NSD at ``tolerance_mm`` and HD95 (area-weighted 95th percentile, max of both directions).

    Parameters
    ----------
    pred, truth : (M, N, P) bool arrays
    spacing : voxel size in mm along the three axes
    tolerance_mm : surface points closer than this (≤) to the other surface count as overlapping
    """
    d = surface_distances(pred, truth, spacing=spacing)
    n_pred, n_truth = d["pred_areas"].size, d["truth_areas"].size
    if n_pred == 0 and n_truth == 0:
        return SurfaceMetrics(1.0, 0.0)
    if n_pred == 0 or n_truth == 0:
        return SurfaceMetrics(0.0, np.inf)
    overlap = d["truth_areas"][d["truth_to_pred"] <= tolerance_mm].sum() + d["pred_areas"][d["pred_to_truth"] <= tolerance_mm].sum()
    nsd = float(overlap / (d["truth_areas"].sum() + d["pred_areas"].sum()))
    hd95 = max(_percentile(d["truth_to_pred"], d["truth_areas"], 95), _percentile(d["pred_to_truth"], d["pred_areas"], 95))
    return SurfaceMetrics(nsd, hd95)

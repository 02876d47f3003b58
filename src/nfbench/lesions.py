"""Lesion instances and the lesion table, ordered largest first."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import pandas as pd

from nfbench.bbox import mask_bbox
from nfbench.components import connected_components
from nfbench.types import BoxSlices

__all__ = ["Lesion", "instance_map", "instance_ids_problem", "lesion_table", "lesions_frame", "is_binary_label",
           "voxel_volume_ml", "MAX_PIECES_PER_ID"]

MAX_PIECES_PER_ID = 2
"""How many separate 26-connected pieces a non-binary label may hold per distinct non-zero value.

In an instance map each ID is one lesion, in one piece or, where thick slices cut it, a few: on
the phantom's instance maps there are at most 1.07 pieces per ID. A mask saved as 0/255, or a
class map (0/1/2), holds many lesions per value. More than 2 pieces per value, on average, is
refused as not lesion IDs (:func:`instance_ids_problem`); a single lesion split in two is kept.
"""


def voxel_volume_ml(affine: np.ndarray) -> float:
    """The volume of one voxel in ml: ``|det|`` of the affine's 3×3 part (mm³) / 1000.

    The one definition every lesion, error and detection volume uses; unlike the product of the
    spacings it stays right for sheared grids (e.g. a tilted CT gantry).
    """
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0


@dataclass(frozen=True)
class Lesion:
    """One ground-truth lesion. ``lesion_id`` is its label value, ``rank`` its size order (1 = largest)."""

    lesion_id: int
    rank: int
    n_voxels: int
    volume_ml: float
    bbox: BoxSlices  # canonical grid, half-open
    centroid_ijk: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]


def is_binary_label(label: np.ndarray) -> bool:
    """True when the label holds only 0 and 1 (a lesion-vs-background mask)."""
    return label.size == 0 or int(label.max()) <= 1


def _smallest_uint(n: int) -> type:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def _list_values(values: np.ndarray, *, shown: int = 5) -> str:
    text = ", ".join(str(int(v)) for v in values[:shown])
    return text if values.size <= shown else f"{text}, ... ({values.size} values)"


def instance_ids_problem(label: np.ndarray) -> str | None:
    """Why a non-binary label's values cannot be lesion IDs; None when they can (or the label is binary).

    Non-binary values are used as lesion IDs, so a mask scaled to 0/255 or a class map would
    silently count one lesion per value. Such a label is recognised by its pieces: more than
    :data:`MAX_PIECES_PER_ID` times as many regions as distinct non-zero values, a region being a
    26-connected set of voxels of one value (one ``cc3d`` pass over the labelled voxels' bounding
    box; touching instances stay separate regions, so an instance map has at least one per ID).
    Passed, as the rule cannot tell them from instance maps: any label with at most two regions
    per value, so an instance map with lesions in two pieces, but also a 0/255 mask with one
    lesion (read as lesion 255: right) or two (read as one lesion in two pieces) and a class map
    with at most two lesions per class. ``label`` holds integer values (of any numeric type).
    """
    if is_binary_label(label):
        return None
    mask = label > 0
    values = np.unique(label[mask])
    crop = label[mask_bbox(mask)]
    _, pieces = connected_components(crop if crop.dtype.kind in "biu" else crop.astype(np.int64), connectivity=26)
    if pieces <= MAX_PIECES_PER_ID * values.size:
        return None
    return (f"label values ({_list_values(values)}) look like a mask scaled to 0/255 or a class map, not lesion "
            f"IDs: {pieces} separate 26-connected regions for {values.size} distinct value(s), more than "
            f"{MAX_PIECES_PER_ID} per value; store lesions as a 0/1 mask or as IDs 1..N, or have evaluate recompute "
            "the instances from connected components (nfbench evaluate --recompute-instances; "
            "recompute_instances=True in the evaluation plan)")


def instance_map(label: np.ndarray, *, recompute: bool = False) -> np.ndarray:
    """Instance IDs (0 = background) of a binary or instance label.

    A binary label (values 0/1) is split into 26-connected components. An instance label keeps
    its IDs unless ``recompute`` is set, in which case the components of ``label > 0`` are used.
    The returned array has the smallest unsigned type that holds the IDs. Whether the values can
    be IDs at all is for the checks to say (:func:`instance_ids_problem`), not for this function.
    """
    if not recompute and not is_binary_label(label):
        return label.astype(_smallest_uint(int(label.max())), copy=False)
    components, _ = connected_components(label > 0, connectivity=26)
    return components.astype(_smallest_uint(int(components.max()) if components.size else 0), copy=False)


def lesion_table(instances: np.ndarray, *, affine: np.ndarray) -> list[Lesion]:
    """Every lesion of an instance map, largest first; ties broken by the raster index of the first voxel.

    Statistics come from one ``cc3d.statistics`` pass; only the tie-break looks inside bounding boxes.
    """
    if instances.size == 0 or not instances.any():
        return []
    stats = cc3d.statistics(instances)
    counts = np.asarray(stats["voxel_counts"])
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    boxes = stats["bounding_boxes"]
    centroids = np.asarray(stats["centroids"])
    voxel_ml = voxel_volume_ml(affine)
    shape = instances.shape

    def first_voxel(lesion_id: int) -> int:
        box = boxes[lesion_id]
        crop = instances[box]
        local = np.unravel_index(int(np.argmax(crop == lesion_id)), crop.shape)
        return int(np.ravel_multi_index(tuple(s.start + l for s, l in zip(box, local)), shape))

    tied = {int(c) for c, n in zip(*np.unique(counts[ids], return_counts=True)) if n > 1}
    key = {int(i): (-int(counts[i]), first_voxel(int(i)) if int(counts[i]) in tied else 0) for i in ids}
    order = sorted(key, key=key.__getitem__)
    table = []
    for rank, lesion_id in enumerate(order, start=1):
        c = tuple(float(v) for v in centroids[lesion_id])
        mm = tuple(float(v) for v in (affine[:3, :3] @ np.asarray(c) + affine[:3, 3]))
        box = tuple(slice(int(s.start), int(s.stop)) for s in boxes[lesion_id])
        n = int(counts[lesion_id])
        table.append(Lesion(lesion_id, rank, n, n * voxel_ml, box, c, mm))  # type: ignore[arg-type]
    return table


def lesions_frame(lesions: list[Lesion]) -> pd.DataFrame:
    """The lesion table as a DataFrame (bounding boxes as start/stop columns)."""
    rows = []
    for les in lesions:
        row = {"lesion_id": les.lesion_id, "lesion_rank": les.rank, "n_voxels": les.n_voxels, "volume_ml": les.volume_ml}
        for axis, s in zip("ijk", les.bbox):
            row[f"bbox_{axis}0"], row[f"bbox_{axis}1"] = s.start, s.stop
        for axis, v in zip("ijk", les.centroid_ijk):
            row[f"centroid_{axis}"] = v
        for axis, v in zip("xyz", les.centroid_mm):
            row[f"centroid_{axis}_mm"] = v
        rows.append(row)
    return pd.DataFrame(rows)

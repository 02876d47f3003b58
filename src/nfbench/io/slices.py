"""2D slices of 3D volumes for 2D models (SAM2, SimpleClick, ...): 8-bit images and instance masks.

Orientation (fixed; recorded in ``slices.json``)
-----------------------------------------------
Volumes are first brought to canonical RAS+ (:func:`nfbench.io.volume.load_volume`), where an
axis code names the direction its index *increases toward*: axis 0 → patient's Right, axis 1 →
Anterior, axis 2 → Superior. Slices are taken along the thick-slice axis (largest spacing; axis 1
for coronal whole-body MRI, ties prefer axis 1), and frame ``n`` is index ``n`` along it, so for
coronal data frame 0 is the most posterior slice.

In-plane, of the two remaining canonical axes ``a < b``, rows follow ``b`` from its high end and
columns follow ``a`` from its high end: ``pixel[row, col] = volume[..., a = A-1-col, b = B-1-row]``.
For coronal slices this is the radiological view: row 0 is the most superior voxel row (head up)
and column 0 the patient's rightmost voxel (patient's right on the image's left). Axial slices
show anterior up, patient's right on the left; sagittal slices superior up, anterior on the left.

Files: ``OUT/<image folder>/<case>/%05d.png`` (8-bit grey) and
``OUT/<label folder without _instance>_instance/<case>/%05d.png`` (instance ids ranked by size,
largest lesion = 1; uint8 when a case has at most 255 lesions, else uint16, so no lesion is ever
dropped). PNG, not the original's JPEG: lossless, so the 8-bit values and mask borders stay exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nfbench.io.check import label_problems, pair_problems
from nfbench.io.dataset import Case, discover_dataset
from nfbench.io.volume import Volume, load_volume
from nfbench.lesions import instance_map, lesion_table

__all__ = [
    "SliceError",
    "SlicedCase",
    "slice_axis",
    "intensity_window",
    "to_uint8",
    "rank_instances",
    "display_plane",
    "slice_case",
    "slice_dataset",
    "PERCENTILES",
]

PERCENTILES = (0.5, 99.5)
_FRAME = re.compile(r"\d{5}\.png")
_ORIENTATION_TEXT = (
    "canonical RAS+ (axis 0 -> patient right, 1 -> anterior, 2 -> superior); frame n = index n along "
    "slice_axis; of the other axes a < b, pixel[row, col] = volume[a = A-1-col, b = B-1-row]: coronal "
    "slices have row 0 = most superior (head up) and column 0 = patient's rightmost (patient right on "
    "image left); frame 0 = most posterior"
)


class SliceError(ValueError):
    """A dataset or case that cannot be sliced; the message names the file and the problem."""


@dataclass(frozen=True)
class SlicedCase:
    """What was written for one case (folders relative to the output folder)."""

    subset: str
    case: str
    image_dir: str
    label_dir: str | None
    n_frames: int
    slice_axis: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    stored_orientation: str
    intensity_lo: float
    intensity_hi: float
    n_lesions: int | None
    mask_dtype: str | None


def slice_axis(spacing: tuple[float, float, float]) -> int:
    """The thick-slice axis: the largest spacing; ties prefer axis 1 (coronal), then the lowest axis."""
    largest = max(spacing)
    tied = [axis for axis, s in enumerate(spacing) if np.isclose(s, largest, rtol=1e-6)]
    return 1 if 1 in tied else tied[0]


def intensity_window(image: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """Low and high percentiles of the non-zero voxels ((0, 0) when every voxel is 0)."""
    nonzero = image[image != 0]
    if nonzero.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(nonzero, percentiles)
    return float(lo), float(hi)


def to_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map ``[lo, hi]`` linearly to 0–255 (clipped, rounded); voxels that are exactly 0 stay 0.

    When ``hi <= lo`` (a constant image) every non-zero voxel becomes 255.
    """
    lo, hi = window
    values = image.astype(np.float32, copy=False)
    if hi > lo:
        scaled = np.rint((np.clip(values, lo, hi) - lo) * np.float32(255.0 / (hi - lo)))
    else:
        scaled = np.full(values.shape, 255.0, dtype=np.float32)
    out = scaled.astype(np.uint8)
    out[image == 0] = 0
    return out


def rank_instances(label: np.ndarray, *, affine: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel lesions by size rank (largest = 1, ties by first raster voxel), and their count.

    Instances follow :func:`nfbench.lesions.instance_map` (binary labels are split into 26-connected
    components). The result is uint8 for up to 255 lesions, uint16 up to 65535; more is an error
    (a PNG holds at most 16 bits).
    """
    instances = instance_map(label)
    lesions = lesion_table(instances, affine=affine)
    n = len(lesions)
    if n > np.iinfo(np.uint16).max:
        raise SliceError(f"{n} lesions do not fit a 16-bit PNG mask")
    dtype = np.uint8 if n <= np.iinfo(np.uint8).max else np.uint16
    lut = np.zeros(int(instances.max()) + 1 if instances.size else 1, dtype=dtype)
    for les in lesions:
        lut[les.lesion_id] = les.rank
    return lut[instances], n


def display_plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a canonical-RAS array, in the documented display orientation."""
    plane = np.take(volume, index, axis=axis)
    return np.ascontiguousarray(plane[::-1, ::-1].T)


def _write_frames(folder: Path, volume: np.ndarray, axis: int, convert: Callable[[np.ndarray], np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():  # frames of an earlier run with more slices would linger
        if _FRAME.fullmatch(stale.name):
            stale.unlink()
    for index in range(volume.shape[axis]):
        Image.fromarray(convert(display_plane(volume, axis, index))).save(folder / f"{index:05d}.png")


def _label_out_name(case: Case) -> str:
    base = "labels" + case.subset[len("images") :]
    return f"{base}_instance"


def slice_case(case: Case, out: str | Path, *, axis: int | None = None) -> SlicedCase:
    """Write one case's image (and label, if any) as 2D PNG frames under ``out``.

    Parameters
    ----------
    case : Case
        From :func:`nfbench.io.dataset.discover_dataset`.
    out : str or Path
        Output root; frames go to ``out/<subset>/<case>/`` and ``out/<labels>_instance/<case>/``.
    axis : int, optional
        Canonical axis to slice along; default :func:`slice_axis` of the image's spacing.
    """
    out = Path(out)
    image = load_volume(case.image)
    label: Volume | None = load_volume(case.label) if case.label is not None else None
    if label is not None:
        found = pair_problems(image, label, image_name=case.image.name) + label_problems(label.data)
        if found:
            raise SliceError(f"{case.label}: " + "; ".join(found))
    axis = slice_axis(image.spacing) if axis is None else axis
    if axis not in (0, 1, 2):
        raise SliceError(f"slice axis must be 0, 1 or 2, got {axis}")
    window = intensity_window(image.data)
    image_dir = Path(case.subset) / case.name
    _write_frames(out / image_dir, image.data, axis, lambda plane: to_uint8(plane, window))
    label_dir = n_lesions = mask_dtype = None
    if label is not None:
        data = label.data if label.data.dtype.kind in "biu" else label.data.astype(np.int64)  # integral: checked
        ranked, n_lesions = rank_instances(data, affine=label.affine)
        mask_dtype = ranked.dtype.name
        label_dir = Path(_label_out_name(case)) / case.name
        _write_frames(out / label_dir, ranked, axis, lambda plane: plane)
    return SlicedCase(
        subset=case.subset, case=case.name, image_dir=image_dir.as_posix(),
        label_dir=label_dir.as_posix() if label_dir else None, n_frames=image.shape[axis], slice_axis=axis,
        shape=image.shape, spacing=tuple(round(s, 6) for s in image.spacing),  # type: ignore[arg-type]
        stored_orientation=image.original_orientation, intensity_lo=window[0], intensity_hi=window[1],
        n_lesions=n_lesions, mask_dtype=mask_dtype,
    )


def slice_dataset(
    root: str | Path,
    out: str | Path,
    *,
    subsets: list[str] | None = None,
    axis: int | None = None,
    on_case: Callable[[int, int, str], None] | None = None,
) -> list[SlicedCase]:
    """Slice every case of a dataset (or of the named subsets) and write ``out/slices.json``.

    The dataset must pass discovery without problems (``nfbench data check`` lists them); a case
    whose files cannot be read raises :class:`SliceError` or :class:`~nfbench.io.volume.VolumeError`.
    ``on_case(done, total, case_name)`` is called after each case.
    """
    root, out = Path(root), Path(out)
    dataset = discover_dataset(root)
    if dataset.problems:
        first = dataset.problems[0]
        more = f" (and {len(dataset.problems) - 1} more)" if len(dataset.problems) > 1 else ""
        raise SliceError(f"{first}{more}; run `nfbench data check {root}` for the full list")
    try:
        cases = [c for name in subsets for c in dataset.subset(name)] if subsets else dataset.cases
    except KeyError as err:
        raise SliceError(str(err.args[0])) from err
    done: list[SlicedCase] = []
    for n, case in enumerate(cases, start=1):
        done.append(slice_case(case, out, axis=axis))
        if on_case is not None:
            on_case(n, len(cases), case.name)
    manifest = {
        "format": "nfbench-slices",
        "version": 1,
        "source": str(root.resolve()),
        "orientation": _ORIENTATION_TEXT,
        "image_png": f"8-bit grey; percentiles {PERCENTILES[0]}-{PERCENTILES[1]} of non-zero voxels -> 0-255; 0 stays 0",
        "mask_png": "instance ids by size rank (1 = largest lesion, 26-connected components of binary labels); "
                    "uint8 up to 255 lesions, else uint16",
        "cases": [asdict(c) for c in done],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "slices.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return done

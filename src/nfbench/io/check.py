"""Dataset validation: every problem of a dataset folder, and a per-case summary.

Headers are read first (shape, affine, dimensionality) and voxels only for the value checks
(finite image values, integer and non-negative labels) and the lesion count, so a check of a
large dataset costs one decompression per file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation

from nfbench.io.dataset import Case, Problem, discover_dataset
from nfbench.io.volume import VolumeError, read_header
from nfbench.lesions import instance_map, lesion_table

__all__ = ["CaseSummary", "CheckReport", "check_dataset", "AFFINE_TOLERANCE_MM"]

AFFINE_TOLERANCE_MM = 1e-3
"""Largest difference allowed between matching entries of an image's and its label's affine.

Headers store the affine as float32, which for an origin near 1000 mm is exact to about 6e-5 mm;
1e-3 mm accepts that rounding and refuses any real shift or rotation.
"""


@dataclass(frozen=True)
class CaseSummary:
    """What ``nfbench data check`` shows for one case.

    ``shape`` and ``spacing`` (mm) are given in the canonical RAS grid nfbench works in;
    ``orientation`` is the stored orientation code (e.g. ``RSA`` for coronal whole-body MRI).
    ``n_lesions`` and ``lesion_volume_ml`` are None when the label is missing or unusable.
    """

    subset: str
    case: str
    image: str
    label: str | None
    shape: tuple[int, int, int] | None
    spacing: tuple[float, float, float] | None
    orientation: str | None
    n_lesions: int | None
    lesion_volume_ml: float | None
    ok: bool


@dataclass(frozen=True)
class CheckReport:
    """The result of :func:`check_dataset`: one summary per case and every problem found."""

    root: Path
    cases: list[CaseSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset folder when it lies inside it (as messages show it)."""
        path = Path(path)
        if path != self.root and path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return str(path)

    def problem_lines(self) -> list[str]:
        """One line per problem, ``<file relative to the dataset>: <message>``."""
        return [f"{self.relative(p.path)}: {p.message}" for p in self.problems]

    def to_dict(self) -> dict:
        """A JSON-ready form: ``root``, ``ok``, ``cases`` and ``problems`` (``file``, ``message``)."""
        return {
            "root": str(self.root),
            "ok": self.ok,
            "cases": [asdict(c) for c in self.cases],
            "problems": [{"file": self.relative(p.path), "message": p.message} for p in self.problems],
        }

    def __repr__(self) -> str:
        return f"CheckReport({self.root}: {len(self.cases)} cases, {len(self.problems)} problems)"


@dataclass
class _Header:
    """What the header of one file says, in the file's own grid."""

    img: nib.Nifti1Image
    shape: tuple[int, int, int]
    affine: np.ndarray


def _strip_path(err: Exception, path: Path) -> str:
    """The message of a VolumeError without its leading ``<path>: `` (the problem names the file)."""
    text = str(err)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _read_header(path: Path, problems: list[Problem]) -> _Header | None:
    try:
        img = read_header(path)
    except VolumeError as err:
        problems.append(Problem(path, _strip_path(err, path)))
        return None
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        shape = shape[:3]  # a trailing singleton axis is squeezed on load, not an error
    if len(shape) != 3:
        what = f"a {len(shape)}D volume" if len(shape) > 3 else f"a {len(shape)}D image"
        problems.append(Problem(path, f"{what} of shape {tuple(img.shape)}; expected a 3D volume"))
        return None
    return _Header(img, shape, np.asarray(img.affine, dtype=float))  # type: ignore[arg-type]


def _read_voxels(path: Path, header: _Header, problems: list[Problem]) -> np.ndarray | None:
    try:
        return np.asanyarray(header.img.dataobj).reshape(header.shape)
    except Exception as err:  # noqa: BLE001  (gzip, zlib, EOF and short-read errors all mean "corrupt")
        problems.append(Problem(path, f"truncated or corrupt voxel data ({type(err).__name__}: {err})"))
        return None


def _canonical_geometry(header: _Header) -> tuple[tuple[int, int, int], tuple[float, float, float], str]:
    ornt = io_orientation(header.affine)
    zooms = np.sqrt((header.affine[:3, :3] ** 2).sum(axis=0))
    shape = [0, 0, 0]
    spacing = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(ornt):
        shape[int(target)] = header.shape[axis]
        spacing[int(target)] = round(float(zooms[axis]), 6)
    return tuple(shape), tuple(spacing), "".join(nib.aff2axcodes(header.affine))  # type: ignore[return-value]


def _check_image_values(path: Path, data: np.ndarray, problems: list[Problem]) -> None:
    if not np.issubdtype(data.dtype, np.floating):
        return
    n_nan = int(np.count_nonzero(np.isnan(data)))
    n_inf = int(np.count_nonzero(np.isinf(data)))
    if n_nan or n_inf:
        problems.append(Problem(path, f"image holds non-finite values ({n_nan} NaN, {n_inf} infinite voxels)"))


def _check_label_values(path: Path, data: np.ndarray, problems: list[Problem]) -> bool:
    """Value checks of a label; True when it can be used as an instance map."""
    usable = True
    if np.issubdtype(data.dtype, np.floating):
        non_integer = data != np.round(data)  # NaN and inf compare unequal or are caught below
        non_integer |= ~np.isfinite(data)
        n = int(np.count_nonzero(non_integer))
        if n:
            example = data[non_integer].flat[0]
            problems.append(Problem(path, f"label holds non-integer values ({n} voxels, e.g. {float(example):g}); "
                                          "labels must be 0 (background) and 1..N (lesions)"))
            usable = False
    elif not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
        problems.append(Problem(path, f"label has unsupported data type {data.dtype}"))
        return False
    if data.size and data.dtype != bool:
        low = np.nanmin(data) if np.issubdtype(data.dtype, np.floating) else data.min()
        if low < 0:
            n = int(np.count_nonzero(data < 0))
            problems.append(Problem(path, f"label holds negative values ({n} voxels, minimum {low.item()!r})"))
            usable = False
    return usable


def _format_affine(affine: np.ndarray) -> str:
    """The top three rows of an affine (the last is always 0 0 0 1), compact but precise."""
    return "[" + ", ".join("[" + ", ".join(f"{v:.6g}" for v in row) + "]" for row in affine[:3]) + "]"


def _check_pair(root: Path, image: Path, image_hdr: _Header, label: Path, label_hdr: _Header,
                tolerance: float, problems: list[Problem]) -> bool:
    """Shape and affine agreement; True when image and label share a grid."""
    rel = lambda p: str(p.relative_to(root)) if p.is_relative_to(root) else str(p)  # noqa: E731
    if label_hdr.shape != image_hdr.shape:
        problems.append(Problem(label, f"shape {label_hdr.shape} differs from {rel(image)} {image_hdr.shape}"))
        return False
    diff = float(np.max(np.abs(label_hdr.affine - image_hdr.affine)))
    if diff > tolerance:
        problems.append(Problem(label, f"affine {_format_affine(label_hdr.affine)} differs from {rel(image)} "
                                       f"{_format_affine(image_hdr.affine)} (largest difference {diff:.4g} mm "
                                       f"> tolerance {tolerance:g} mm)"))
        return False
    return True


def _check_case(root: Path, case: Case, tolerance: float) -> tuple[CaseSummary, list[Problem]]:
    problems: list[Problem] = []
    image_hdr = _read_header(case.image, problems)
    image_data = _read_voxels(case.image, image_hdr, problems) if image_hdr else None
    if image_data is not None:
        _check_image_values(case.image, image_data, problems)
    del image_data
    label_hdr = _read_header(case.label, problems) if case.label else None
    n_lesions = volume_ml = None
    if case.label is not None and label_hdr is not None:
        same_grid = image_hdr is None or _check_pair(root, case.image, image_hdr, case.label, label_hdr,
                                                    tolerance, problems)
        label = _read_voxels(case.label, label_hdr, problems)
        if label is not None and _check_label_values(case.label, label, problems) and same_grid:
            instances = instance_map(label if label.dtype.kind in "biu" else label.astype(np.int64))
            lesions = lesion_table(instances, affine=label_hdr.affine)
            n_lesions = len(lesions)
            volume_ml = round(sum(les.volume_ml for les in lesions), 6)
    geometry = _canonical_geometry(image_hdr) if image_hdr else (None, None, None)
    summary = CaseSummary(
        subset=case.subset, case=case.name, image=str(case.image.relative_to(root)),
        label=str(case.label.relative_to(root)) if case.label else None,
        shape=geometry[0], spacing=geometry[1], orientation=geometry[2],
        n_lesions=n_lesions, lesion_volume_ml=volume_ml, ok=not problems and case.label is not None,
    )
    return summary, problems


def _orphan_labels(problems: list[Problem]) -> list[Path]:
    """Labels reported by discovery as having no image (checked alone, so their own faults show too)."""
    return [p.path for p in problems if p.message.startswith("label without image") and p.path.is_file()]


def check_dataset(
    root: str | Path,
    *,
    affine_tolerance: float = AFFINE_TOLERANCE_MM,
    on_case: Callable[[int, int, str], None] | None = None,
) -> CheckReport:
    """Check a dataset folder and report every problem found, not just the first.

    Parameters
    ----------
    root : str or Path
        Dataset folder with ``imagesTr``/``labelsTr`` and any ``imagesTs*``/``labelsTs*``.
    affine_tolerance : float
        Largest allowed difference (mm) between matching affine entries of image and label.
    on_case : callable, optional
        Called as ``on_case(done, total, case_name)`` after each case (for progress bars).

    Returns
    -------
    CheckReport
        Per-case summaries (canonical shape and spacing, stored orientation, lesion count and
        volume) and a list of :class:`~nfbench.io.dataset.Problem`, each naming its file.

    Notes
    -----
    Checked: folders present and non-empty; every image has a label and every label an image
    (paired by case name); no case name twice within a folder or across subsets; readable gzip
    and NIfTI; 3D (a trailing singleton axis is accepted); image and label shape and affine
    agree; image values finite; label values integer and non-negative. A label with no lesion
    is valid. Lesions are counted as :func:`nfbench.lesions.instance_map` defines them.
    """
    root = Path(root)
    dataset = discover_dataset(root)
    problems = list(dataset.problems)
    seen: dict[str, str] = {}
    for subset, cases in dataset.subsets.items():
        for case in cases:
            if case.name in seen and seen[case.name] != subset:
                problems.append(Problem(case.image, f"case name {case.name!r} is also in {seen[case.name]} "
                                                    "(the same scan in two subsets?)"))
            seen.setdefault(case.name, subset)
    summaries: list[CaseSummary] = []
    cases = dataset.cases
    orphans = _orphan_labels(dataset.problems)
    total = len(cases) + len(orphans)
    for done, case in enumerate(cases, start=1):
        summary, found = _check_case(root, case, affine_tolerance)
        summaries.append(summary)
        problems += found
        if on_case is not None:
            on_case(done, total, case.name)
    for done, label in enumerate(orphans, start=len(cases) + 1):
        hdr = _read_header(label, problems)
        data = _read_voxels(label, hdr, problems) if hdr else None
        if data is not None:
            _check_label_values(label, data, problems)
        if on_case is not None:
            on_case(done, total, label.name)
    return CheckReport(root, summaries, problems)

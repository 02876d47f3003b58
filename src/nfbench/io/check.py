"""Dataset validation: every problem of a dataset folder, and a per-case summary.

Headers are read first (shape, affine, dimensionality) and voxels only for the value checks
(real and finite image values; integer, non-negative, not too sparse labels whose values can be
lesion IDs) and the lesion count, so a check of a large dataset costs one decompression per file.
:func:`image_problems`, :func:`label_problems`, :func:`pair_problems` and :func:`case_problems`
are the checks of one case that ``evaluate`` runs too, with the same messages.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import nibabel as nib
import numpy as np

from nfbench.io.dataset import Case, Problem, discover_dataset
from nfbench.io.volume import VolumeError, canonical_grid, complex_problem, read_header, read_voxels
from nfbench.lesions import instance_ids_problem, instance_map, lesion_table

__all__ = ["CaseSummary", "CheckReport", "check_dataset", "case_problems", "grid_problems", "image_problems",
           "label_problems", "pair_problems",
           "AFFINE_TOLERANCE_MM", "MAX_UNUSED_LABEL_IDS"]

AFFINE_TOLERANCE_MM = 1e-3
"""Largest difference allowed between matching entries of an image's and its label's affine.

Headers store the affine as float32, which for an origin near 1000 mm is exact to about 6e-5 mm;
1e-3 mm accepts that rounding and refuses any real shift or rotation.
"""

MAX_UNUSED_LABEL_IDS = 100_000
"""How many values between 1 and a label's largest ID may go unused.

Per-lesion statistics are indexed by ID (``cc3d.statistics`` costs about 400 bytes and 4 µs per
ID up to the largest), so a label holding IDs 1 and 50 000 000 would take about 20 GB and three
minutes for two lesions. Labels numbered 1..N, even with gaps, stay far below the limit.
"""


class _Grid(Protocol):
    """A voxel grid: canonical RAS+ shape and affine (a loaded Volume, or a header's summary)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def affine(self) -> np.ndarray: ...


def _relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` when it lies inside it (as messages show files)."""
    path = Path(path)
    if path != root and path.is_relative_to(root):
        return str(path.relative_to(root))
    return str(path)


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
        return _relative(self.root, path)

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
    """What the header of one file says: the stored grid, and the canonical grid nfbench reads."""

    img: nib.Nifti1Image
    stored_shape: tuple[int, int, int]
    stored_affine: np.ndarray
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
    stored_affine = np.asarray(img.affine, dtype=float)
    affine, ras_shape = canonical_grid(stored_affine, shape)  # type: ignore[arg-type]
    return _Header(img, shape, stored_affine, ras_shape, affine)  # type: ignore[arg-type]


def _read_voxels(path: Path, header: _Header, problems: list[Problem]) -> np.ndarray | None:
    try:
        return read_voxels(path, header.img).reshape(header.stored_shape)
    except Exception as err:  # noqa: BLE001  (gzip, zlib, EOF and short-read errors all mean "corrupt")
        problems.append(Problem(path, f"truncated or corrupt voxel data ({type(err).__name__}: {err})"))
        return None


def _canonical_geometry(header: _Header) -> tuple[tuple[int, int, int], tuple[float, float, float], str]:
    spacing = tuple(round(float(z), 6) for z in np.sqrt((header.affine[:3, :3] ** 2).sum(axis=0)))
    return header.shape, spacing, "".join(nib.aff2axcodes(header.stored_affine))  # type: ignore[return-value]


def image_problems(data: np.ndarray) -> list[str]:
    """Why an image's voxels cannot be evaluated; empty when they can.

    Refused: complex values (:func:`~nfbench.io.volume.complex_problem`) and NaN or infinite
    voxels, which models and intensity statistics would silently turn into wrong results. One
    ``np.isfinite`` pass, for floating types only; the voxels are counted only when some are bad.
    The messages are those ``nfbench data check`` prints after the image's file name.
    """
    complex_values = complex_problem(data.dtype)
    if complex_values:
        return [complex_values]
    if not np.issubdtype(data.dtype, np.floating):
        return []
    finite = np.isfinite(data)
    if finite.all():
        return []
    n_nan = int(np.count_nonzero(np.isnan(data)))
    n_inf = data.size - int(np.count_nonzero(finite)) - n_nan
    return [f"image holds non-finite values ({n_nan} NaN, {n_inf} infinite voxels)"]


def label_problems(data: np.ndarray, *, keep_ids: bool = True) -> list[str]:
    """Why a label array cannot be used as lesions; empty when it can.

    Refused: an unsupported data type, non-integer values (NaN and infinity included), negative
    values and, when the values are used as lesion IDs (``keep_ids``; not when instances are
    recomputed from connected components), more than :data:`MAX_UNUSED_LABEL_IDS` unused IDs below
    the largest, or values that are not IDs at all (a 0/255 mask or a class map:
    :func:`~nfbench.lesions.instance_ids_problem`). The messages are those ``nfbench data check``
    prints after the label's file name.
    """
    if data.dtype == bool or data.size == 0:
        return []
    floating = np.issubdtype(data.dtype, np.floating)
    if not floating and not np.issubdtype(data.dtype, np.integer):
        return [f"label has unsupported data type {data.dtype}"]
    problems = []
    if floating:
        non_integer = data != np.round(data)  # NaN and inf compare unequal or are caught below
        non_integer |= ~np.isfinite(data)
        n = int(np.count_nonzero(non_integer))
        if n:
            example = float(data[non_integer].flat[0])
            scaled = math.isfinite(example) and abs(example - round(example)) < 1e-3
            problems.append(f"label holds non-integer values ({n} voxels, e.g. {example!r}); "
                            "labels must be 0 (background) and 1..N (lesions)"
                            + ("; values this close to integers come from intensity scaling (scl_slope, "
                               "scl_inter): store labels as integers without it" if scaled else ""))
    low = np.nanmin(data) if floating else data.min()
    if low < 0:
        n = int(np.count_nonzero(data < 0))
        problems.append(f"label holds negative values ({n} voxels, minimum {low.item()!r})")
    if problems or not keep_ids:
        return problems
    high = int(data.max())
    if high > MAX_UNUSED_LABEL_IDS:  # only then can the unused IDs exceed the limit
        used = int(np.unique(data[data > 0]).size)
        if high - used > MAX_UNUSED_LABEL_IDS:
            return [f"label IDs are too sparse: the largest is {high} but {used} distinct lesion IDs are used "
                    f"({high - used} unused, more than {MAX_UNUSED_LABEL_IDS}; per-lesion tables would "
                    f"exhaust memory); renumber the lesions 1..{used}"]
    not_ids = instance_ids_problem(data)
    return [not_ids] if not_ids else []


def _format_affine(affine: np.ndarray) -> str:
    """The top three rows of an affine (the last is always 0 0 0 1), compact but precise."""
    return "[" + ", ".join("[" + ", ".join(f"{v:.6g}" for v in row) + "]" for row in affine[:3]) + "]"


def pair_problems(image: _Grid, label: _Grid, *, image_name: str, tolerance: float = AFFINE_TOLERANCE_MM) -> list[str]:
    """Why a label does not lie on its image's voxels; empty when it does.

    ``image`` and ``label`` are loaded :class:`~nfbench.io.volume.Volume` (or anything with a
    canonical ``shape`` and ``affine``), so grids are compared as nfbench reads them: a label
    stored in another axis order over the same voxels is accepted. The grids' corner voxels may
    lie up to ``tolerance`` mm apart (:data:`AFFINE_TOLERANCE_MM`): measured at the corners, a
    rotation counts by the distance it moves the far end of the grid, not by its tiny matrix
    entries. ``image_name`` is how the message names the image; the messages are those
    ``nfbench data check`` prints after the label's name.
    """
    label_shape, image_shape = tuple(int(n) for n in label.shape), tuple(int(n) for n in image.shape)
    if label_shape != image_shape:
        return [f"shape {label_shape} differs from {image_name} {image_shape}"]
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, n - 1) for n in image_shape])])
    moved = (np.asarray(label.affine, float) - np.asarray(image.affine, float)) @ corners.T
    diff = float(np.max(np.linalg.norm(moved[:3], axis=0)))
    if not diff <= tolerance:  # a NaN difference is refused too
        return [f"affine {_format_affine(label.affine)} differs from {image_name} {_format_affine(image.affine)} "
                f"(a corner voxel {diff:.4g} mm apart > tolerance {tolerance:g} mm)"]
    return []


def _usable_label(image_hdr: _Header | None, label: Path, *, image_name: str, tolerance: float, keep_ids: bool,
                  problems: list[Problem]) -> tuple[_Header, np.ndarray] | None:
    """Read and check a label against its image's header; its header and voxels when usable."""
    label_hdr = _read_header(label, problems)
    if label_hdr is None:
        return None
    mismatch = [] if image_hdr is None else pair_problems(image_hdr, label_hdr, image_name=image_name,
                                                           tolerance=tolerance)
    problems += [Problem(label, message) for message in mismatch]
    data = _read_voxels(label, label_hdr, problems)
    unusable = [] if data is None else label_problems(data, keep_ids=keep_ids)
    problems += [Problem(label, message) for message in unusable]
    return None if data is None or mismatch or unusable else (label_hdr, data)


def case_problems(image: str | Path, label: str | Path, *, keep_ids: bool = True, image_name: str | None = None,
                  tolerance: float = AFFINE_TOLERANCE_MM) -> list[Problem]:
    """What makes one image/label pair unusable for evaluation; empty when it is usable.

    Reads the image's header and the label's voxels (one decompression): readable 3D files,
    :func:`pair_problems` and :func:`label_problems` (``keep_ids`` as there), so a run can refuse
    a bad case before any work with the messages ``nfbench data check`` gives. Each problem
    names its file; messages about the grid name the image ``image_name`` (default: its file name).
    """
    image, label = Path(image), Path(label)
    problems: list[Problem] = []
    image_hdr = _read_header(image, problems)
    _usable_label(image_hdr, label, image_name=image.name if image_name is None else image_name,
                  tolerance=tolerance, keep_ids=keep_ids, problems=problems)
    return problems


def grid_problems(image: str | Path, label: str | Path, *, image_name: str | None = None,
                  tolerance: float = AFFINE_TOLERANCE_MM) -> list[Problem]:
    """What makes one image/label pair unreadable or off-grid, from the two headers alone.

    Cheap (no voxels are read), so a run can refuse every such case before any work; the label's
    values are checked when it is loaded (:func:`label_problems`).
    """
    image, label = Path(image), Path(label)
    problems: list[Problem] = []
    image_hdr, label_hdr = _read_header(image, problems), _read_header(label, problems)
    if image_hdr is not None and label_hdr is not None:
        mismatch = pair_problems(image_hdr, label_hdr, image_name=image.name if image_name is None else image_name,
                                 tolerance=tolerance)
        problems += [Problem(label, message) for message in mismatch]
    return problems


def _check_case(root: Path, case: Case, tolerance: float) -> tuple[CaseSummary, list[Problem]]:
    problems: list[Problem] = []
    image_hdr = _read_header(case.image, problems)
    image_data = _read_voxels(case.image, image_hdr, problems) if image_hdr else None
    if image_data is not None:
        problems += [Problem(case.image, message) for message in image_problems(image_data)]
    del image_data
    n_lesions = volume_ml = None
    usable = None if case.label is None else _usable_label(
        image_hdr, case.label, image_name=_relative(root, case.image), tolerance=tolerance, keep_ids=True,
        problems=problems)
    if usable is not None:
        label_hdr, label = usable
        instances = instance_map(label if label.dtype.kind in "biu" else label.astype(np.int64))
        lesions = lesion_table(instances, affine=label_hdr.stored_affine)
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
    and NIfTI; 3D (a trailing singleton axis is accepted); image and label on the same voxels
    (:func:`pair_problems`: canonical shape and affine); image values real and finite
    (:func:`image_problems`); label values integer, non-negative, not too sparse and, for a
    non-binary label, usable as lesion IDs (:func:`label_problems`). A label with no lesion is
    valid. Lesions are counted as :func:`nfbench.lesions.instance_map` defines them. Folders
    named like a subset but not understood are reported (their files would be left out).
    """
    if not affine_tolerance >= 0:
        raise ValueError(f"affine tolerance must be a non-negative number of mm, got {affine_tolerance}")
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
            problems += [Problem(label, message) for message in label_problems(data)]
        if on_case is not None:
            on_case(done, total, label.name)
    return CheckReport(root, summaries, problems)

"""The result tables (DESIGN §4) as typed rows: each table's columns are the fields of one dataclass.

The column names are public: add columns, never rename. A row is built with every field given
(no silent NaN column); the run store refuses a row of the wrong type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RUN_KEYS", "CLICKS", "INTERACTIONS", "LESIONS", "CASES", "TABLES", "ROW_TYPES", "THRESHOLDS",
    "RunKeys", "ClickRow", "InteractionRow", "LesionRow", "CaseRow", "ProvenanceRow", "PROVENANCE", "row_values",
    "ADDED_COLUMNS", "with_added_columns",
]

# Dice levels for NoC@X / NoF@X; the column suffix is the level in percent (noc_80, ...).
THRESHOLDS = (0.80, 0.85, 0.90)

NAN = math.nan


@dataclass(frozen=True)
class RunKeys:
    """Identify one evaluated case of one model under one protocol; every table starts with these.

    ``budget`` is the number of interactions of each session (the curve length) and ``stop_dice``
    the early-stop target (NaN: none): runs that differ in either are different protocols and are
    never averaged together.
    """

    run_id: str
    model: str
    scenario: str
    click_policy: str
    budget: int
    stop_dice: float
    seed: int
    fold: int | None
    test_set: str
    case: str


@dataclass(frozen=True)
class ClickRow(RunKeys):
    lesion_id: int        # 0 for scan-level sessions
    interaction: int      # 1-based
    click_order: int      # 1-based within the session
    i: int                # voxel index in the canonical RAS grid
    j: int
    k: int
    x_mm: float           # RAS world coordinates from the affine
    y_mm: float
    z_mm: float
    positive: bool


@dataclass(frozen=True)
class InteractionRow(RunKeys):
    lesion_id: int            # 0 for scan-level sessions (global scenarios, lesion-free scans)
    lesion_rank: int          # 0 for scan-level sessions
    lesion_volume_ml: float   # the prompted lesion's volume; total lesion volume for scan-level rows
    interaction: int          # 1-based
    n_clicks: int             # clicks added in this interaction
    n_boxes: int              # box prompts given with this interaction
    dice_lesion: float        # this lesion vs prediction, other lesions' voxels ignored (NaN at scan level)
    dice_lesion_strict: float # this lesion vs the whole prediction (the original's definition)
    dice_scan: float          # all lesions vs the scan's current prediction
    nsd_lesion: float         # with --surface-metrics or the cvpr25 preset (else NaN)
    nsd_cvpr_lesion: float    # nsd_lesion set to 0 where dice_lesion <= 0.2 (the CVPR 2025 scoring)
    latency_ms: float         # model time for this interaction (prompts + predict)
    overhead_ms: float        # simulation time for this interaction (click placement + metrics)
    carried_forward: bool     # True for rows filled after an early stop
    lesion_free: bool         # the one row of a scan without lesions (nothing to prompt)


@dataclass(frozen=True)
class LesionRow(RunKeys):
    lesion_id: int
    lesion_rank: int
    lesion_volume_ml: float
    n_interactions: int       # interactions actually used (before carrying forward)
    stopped_early: bool
    dice_lesion: float        # after the last interaction
    dice_lesion_strict: float
    nsd_lesion: float
    nsd_cvpr_lesion: float
    hd95_lesion_mm: float     # inf when the prediction of the lesion is empty
    auc_dice: float
    auc_dice_norm: float
    auc_dice_cvpr: float      # cvpr25 preset: trapezoid over the 5 click steps (0-4), else NaN
    auc_nsd_cvpr: float       # the same over nsd_cvpr_lesion
    noc_80: int               # interactions to reach X (capped at the budget when never reached)
    noc_85: int
    noc_90: int
    reached_80: bool          # whether X was reached within the budget (NoF = count of False)
    reached_85: bool
    reached_90: bool


@dataclass(frozen=True)
class CaseRow(RunKeys):
    n_lesions: int            # lesions in the ground truth
    n_lesions_prompted: int
    gt_volume_ml: float
    n_interactions: int       # interactions used in the case (all sessions)
    dice_scan: float
    nsd_scan: float
    nsd_cvpr_scan: float      # nsd_scan set to 0 where dice_scan <= 0.2
    hd95_scan_mm: float       # inf when the prediction or the truth is empty (not both)
    diagonal_mm: float        # the image diagonal: the cap of capped HD95 means
    tp_any: int
    fp_any: int
    fn_any: int
    precision_any: float
    recall_any: float
    f1_any: float
    tp_iou10: int
    fp_iou10: int
    fn_iou10: int
    precision_iou10: float
    recall_iou10: float
    f1_iou10: float
    fp_volume_ml: float       # predicted components matching no lesion (any overlap), whole components
    fn_volume_ml: float       # lesions no predicted component overlaps
    fp_voxel_volume_ml: float # predicted voxels outside every lesion (a matched component's leak counts)
    fn_voxel_volume_ml: float # lesion voxels not predicted
    auc_dice_scan: float      # over the scan-level curve (global scenarios)
    auc_dice_scan_norm: float
    auc_dice_scan_cvpr: float # cvpr25 preset, global-corrective: trapezoid over the 5 click steps
    noc_80_scan: float
    noc_85_scan: float
    noc_90_scan: float
    mean_latency_ms: float
    wall_time_s: float       # this scenario on this case, model start excluded
    model_start_s: float     # the model's start() on this case, shared by all its scenarios
    peak_memory_mb: float     # peak resident memory of the process during the case
    peak_gpu_memory_mb: float # peak CUDA memory allocated by torch (NaN without CUDA)
    status: str               # "ok" or "failed"
    error: str                # message when failed, else ""

    @classmethod
    def failed(cls, keys: RunKeys, error: str) -> CaseRow:
        """The row of a case that could not be evaluated: its keys, the error, NaN metrics."""
        values = {f.name: NAN for f in fields(cls) if f.name not in _KEY_NAMES}
        values.update(status="failed", error=error, n_interactions=0)
        return cls(**_keys_of(keys), **values)


@dataclass(frozen=True)
class ProvenanceRow(RunKeys):
    """Where one case result comes from: enough to tell two results apart that should agree and do not.

    Strings are empty when unknown (no git checkout, no weights, not run from a study file).
    """

    study_sha256: str         # SHA-256 of the study file of `nfbench grid` ("" for `nfbench evaluate`)
    task_config: str          # the resolved task as JSON: model spec, scenario, seed, fold, case, files
    nfbench_version: str
    nfbench_commit: str       # git commit of the nfbench source tree, "+dirty" when modified
    python_version: str
    numpy_version: str
    torch_version: str        # "not installed" when absent
    monai_version: str
    model_package: str        # the distribution that provides the model (its `package` attribute or module)
    model_package_version: str
    weights_sha256: str       # of the weights file (of every file, in order, for a folder)
    device: str               # the device the model ran on, with the GPU's name
    host: str
    model_seed: int           # the seed the model received for this case
    click_seed: str           # the seed sequence of the simulated user's generator for this case


_KEY_NAMES = tuple(f.name for f in fields(RunKeys))


def _keys_of(keys: RunKeys) -> dict:
    return {name: getattr(keys, name) for name in _KEY_NAMES}


def row_values(row: RunKeys) -> tuple:
    """The row's values in column order (no deep copy, unlike ``dataclasses.astuple``)."""
    return tuple(row.__dict__[name] for name in _COLUMNS[type(row)])


ROW_TYPES: dict[str, type[RunKeys]] = {
    "clicks": ClickRow, "interactions": InteractionRow, "lesions": LesionRow, "cases": CaseRow,
    "provenance": ProvenanceRow,
}
_COLUMNS = {cls: tuple(f.name for f in fields(cls)) for cls in ROW_TYPES.values()}

RUN_KEYS = _KEY_NAMES
CLICKS = _COLUMNS[ClickRow]
INTERACTIONS = _COLUMNS[InteractionRow]
LESIONS = _COLUMNS[LesionRow]
CASES = _COLUMNS[CaseRow]
PROVENANCE = _COLUMNS[ProvenanceRow]
TABLES = {name: _COLUMNS[cls] for name, cls in ROW_TYPES.items()}

ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"cases": ("fp_voxel_volume_ml", "fn_voxel_volume_ml")}
"""Float columns added after run folders were first written: a table read from an older run lacks them."""


def with_added_columns(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table ``name`` read from a run folder, with the :data:`ADDED_COLUMNS` it lacks added empty
    (NaN), in the schema's column order.

    An older run then loads and reports (its new metrics empty, never invented); a resumed older
    run, whose consolidated table puts the added columns last (its first parts lack them), gets the
    schema's order back. Any other missing column stays missing, for the reader to refuse by name;
    ``frame`` is not modified.
    """
    lacking = [c for c in ADDED_COLUMNS.get(name, ()) if c not in frame.columns]
    frame = frame.assign(**{c: NAN for c in lacking}) if lacking else frame
    order = [c for c in TABLES[name] if c in frame.columns] + [c for c in frame.columns if c not in TABLES[name]]
    return frame if list(frame.columns) == order else frame[order]

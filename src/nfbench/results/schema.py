"""Column names of the result tables (DESIGN §4). They are public: add columns, never rename."""

from __future__ import annotations

__all__ = ["RUN_KEYS", "CLICKS", "INTERACTIONS", "LESIONS", "CASES", "TABLES", "THRESHOLDS"]

# Dice levels for NoC@X / NoF@X; the column suffix is the level in percent (noc_80, ...).
THRESHOLDS = (0.80, 0.85, 0.90)

# Identify one evaluated case inside a run; every table but `clicks` starts with these.
RUN_KEYS = ("run_id", "model", "scenario", "click_policy", "seed", "fold", "test_set", "case")

CLICKS = (
    "run_id", "case", "lesion_id", "interaction", "click_order",
    "i", "j", "k", "x_mm", "y_mm", "z_mm", "positive",
)

INTERACTIONS = RUN_KEYS + (
    "lesion_id",          # 0 for scan-level sessions (global scenarios)
    "lesion_rank",        # 0 for scan-level sessions
    "lesion_volume_ml",   # volume of the prompted lesion; total lesion volume for scan-level rows
    "interaction",        # 1-based
    "n_clicks",           # clicks added in this interaction
    "n_boxes",            # box prompts given with this interaction (--boxes, box-capable models)
    "dice_lesion",        # this lesion vs prediction, other lesions' voxels ignored (NaN at scan level)
    "dice_lesion_strict", # this lesion vs the whole prediction (the original's definition)
    "dice_scan",          # all lesions vs the scan's current prediction
    "nsd_lesion",         # only with --surface-metrics (else NaN)
    "latency_ms",         # model time for this interaction (add_click + predict)
    "overhead_ms",        # simulation time for this interaction (click placement + metrics), model excluded
    "carried_forward",    # True for rows filled after an early stop
)

LESIONS = RUN_KEYS + (
    "lesion_id", "lesion_rank", "lesion_volume_ml",
    "n_interactions",      # interactions actually used (before carrying forward)
    "stopped_early",
    "dice_lesion", "dice_lesion_strict", "nsd_lesion", "hd95_lesion_mm",  # after the last interaction
    "auc_dice", "auc_dice_norm",
    "noc_80", "noc_85", "noc_90",            # interactions to reach X (capped at the budget when never reached)
    "reached_80", "reached_85", "reached_90",  # whether X was reached within the budget (NoF = count of False)
)

CASES = RUN_KEYS + (
    "n_lesions",           # lesions in the ground truth
    "n_lesions_prompted",
    "gt_volume_ml",
    "n_interactions",      # interactions used in the case (all sessions)
    "dice_scan", "nsd_scan", "hd95_scan_mm",
    "tp_any", "fp_any", "fn_any", "precision_any", "recall_any", "f1_any",
    "tp_iou10", "fp_iou10", "fn_iou10", "precision_iou10", "recall_iou10", "f1_iou10",
    "fp_volume_ml", "fn_volume_ml",
    "auc_dice_scan", "auc_dice_scan_norm",   # over the scan-level curve (global scenarios)
    "noc_80_scan", "noc_85_scan", "noc_90_scan",
    "mean_latency_ms", "wall_time_s", "peak_memory_mb",
    "status",              # "ok" or "failed"
    "error",               # message when failed, else ""
)

TABLES = {"clicks": CLICKS, "interactions": INTERACTIONS, "lesions": LESIONS, "cases": CASES}

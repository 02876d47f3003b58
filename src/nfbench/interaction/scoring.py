"""Scoring of sessions and cases into typed rows: the one place lesion and case metrics are computed.

The loop measures every interaction on crops; what is summarised per lesion (final metrics, AUC,
NoC) and per case (scan metrics, detection, the scan curve, cost) is computed here.
"""

from __future__ import annotations

import math

import numpy as np

from nfbench.bbox import mask_bbox, pad_bbox, union_bbox
from nfbench.interaction.scenarios import CVPR25_CLICKS, Scenario
from nfbench.io.volume import Volume
from nfbench.lesions import Lesion, voxel_volume_ml
from nfbench.metrics.curves import auc, noc, reached
from nfbench.metrics.detection import detection
from nfbench.metrics.overlap import dice_from_counts, overlap_counts
from nfbench.metrics.surface import surface_metrics
from nfbench.results.schema import THRESHOLDS, CaseRow, InteractionRow, LesionRow, RunKeys
from nfbench.types import BoolMask

__all__ = ["CVPR_DICE_GATE", "gated_nsd", "curve_summary", "cvpr_auc", "score_lesion", "score_case",
           "diagonal_mm"]

#: The CVPR 2025 challenge scores NSD only where Dice exceeds this (else 0).
CVPR_DICE_GATE = 0.2


def gated_nsd(nsd: float, dice_value: float) -> float:
    """The challenge's NSD: 0 where Dice ≤ 0.2, NaN stays NaN."""
    if math.isnan(nsd) or math.isnan(dice_value):
        return math.nan
    return 0.0 if dice_value <= CVPR_DICE_GATE else nsd


def cvpr_auc(curve: np.ndarray, scenario: Scenario) -> float:
    """The challenge's AUC: trapezoid over its 5 click steps (those after the box step), range 0-4.

    The challenge takes a curve's last 5 of its 6 steps; here the 5 clicks that follow the box
    step (or open the session without one), so that a longer budget still scores the same clicks.
    NaN where the scenario has no such clicks: a single-click scenario (``global-single``'s steps
    are one lesion each) or a budget under 5 clicks.
    """
    if not (scenario.cvpr_scoring and scenario.corrective):
        return math.nan
    clicks = np.asarray(curve, float)[int(scenario.box_step):][:CVPR25_CLICKS]
    if clicks.size < CVPR25_CLICKS:
        return math.nan
    return float(auc(clicks, normalise=False))


def curve_summary(curve: np.ndarray, budget: int) -> dict:
    """AUC (raw and normalised), NoC@X and reached@X of a session curve of ``budget`` values."""
    out = {"auc_dice": auc(curve, normalise=False), "auc_dice_norm": auc(curve, normalise=True)}
    for x in THRESHOLDS:
        pct = round(x * 100)
        out[f"noc_{pct}"] = noc(curve, x, budget)
        out[f"reached_{pct}"] = reached(curve, x)
    return out


def diagonal_mm(volume: Volume) -> float:
    """The image's diagonal in mm: the largest distance two of its points can have (HD95's cap)."""
    return float(np.linalg.norm(np.asarray(volume.shape) * np.asarray(volume.spacing)))


def score_lesion(
    keys: RunKeys,
    lesion: Lesion,
    rows: list[InteractionRow],
    final: BoolMask,
    final_box: tuple[slice, ...] | None,
    instances: np.ndarray,
    scenario: Scenario,
    *,
    spacing: tuple[float, float, float],
    tolerance_mm: float,
) -> LesionRow:
    """One lesion's row from its ``budget`` interaction rows and its final mask (cropped: other
    lesions' voxels are ignored, as in the lesion Dice)."""
    scope = pad_bbox(union_bbox(lesion.bbox, final_box), 1, instances.shape)
    truth = instances[scope] == lesion.lesion_id
    ignore = (instances[scope] > 0) & ~truth
    surf = surface_metrics(final[scope] & ~ignore, truth, spacing=spacing, tolerance_mm=tolerance_mm)
    last = rows[-1]
    n_used = sum(not r.carried_forward for r in rows)
    curve = np.array([r.dice_lesion for r in rows])
    return LesionRow(
        **keys.__dict__, lesion_id=lesion.lesion_id, lesion_rank=lesion.rank, lesion_volume_ml=lesion.volume_ml,
        n_interactions=n_used, stopped_early=n_used < scenario.budget,
        dice_lesion=last.dice_lesion, dice_lesion_strict=last.dice_lesion_strict,
        nsd_lesion=surf.nsd, nsd_cvpr_lesion=gated_nsd(surf.nsd, last.dice_lesion), hd95_lesion_mm=surf.hd95_mm,
        auc_dice_cvpr=cvpr_auc(curve, scenario),
        auc_nsd_cvpr=cvpr_auc(np.array([r.nsd_cvpr_lesion for r in rows]), scenario),
        **curve_summary(curve, scenario.budget),
    )


def score_case(
    keys: RunKeys,
    volume: Volume,
    instances: np.ndarray,
    lesions: list[Lesion],
    scenario: Scenario,
    prediction: BoolMask,
    interactions: list[InteractionRow],
    *,
    tolerance_mm: float,
    wall_time_s: float,
    model_start_s: float,
    peak_memory_mb: float,
    peak_gpu_memory_mb: float,
) -> CaseRow:
    """The case's row: the final scan prediction against all lesions, plus the scan curve of global
    scenarios and the cost of the case.

    The voxel-wise error volumes come from the scan Dice's counts on the union box (no voxel of
    either mask lies outside it): leaks of a matched component, which ``fp_volume_ml`` cannot see.
    """
    truth = instances > 0
    spacing = volume.spacing
    box = union_bbox(mask_bbox(truth), mask_bbox(prediction))
    inter, n_pred, n_truth = (0, 0, 0) if box is None else overlap_counts(prediction[box], truth[box])
    scan_dice = dice_from_counts(inter, n_pred, n_truth)
    voxel_ml = voxel_volume_ml(volume.affine)
    surf = surface_metrics(prediction, truth, spacing=spacing, tolerance_mm=tolerance_mm)
    counts = {}
    for suffix, iou in (("any", 0.0), ("iou10", 0.1)):
        det = detection(prediction, instances, affine=volume.affine, iou_threshold=iou)
        counts.update({f"tp_{suffix}": det.tp, f"fp_{suffix}": det.fp, f"fn_{suffix}": det.fn,
                       f"precision_{suffix}": det.precision, f"recall_{suffix}": det.recall, f"f1_{suffix}": det.f1})
        if suffix == "any":
            counts.update(fp_volume_ml=det.fp_volume_ml, fn_volume_ml=det.fn_volume_ml)
    scan: dict[str, float] = {"auc_dice_scan": math.nan, "auc_dice_scan_norm": math.nan, "auc_dice_scan_cvpr": math.nan,
                              **{f"noc_{round(x * 100)}_scan": math.nan for x in THRESHOLDS}}
    if not scenario.per_lesion and interactions:
        curve = np.array([r.dice_scan for r in interactions])
        summary = curve_summary(curve, scenario.budget)
        scan.update(auc_dice_scan=summary["auc_dice"], auc_dice_scan_norm=summary["auc_dice_norm"],
                    **{f"noc_{round(x * 100)}_scan": float(summary[f"noc_{round(x * 100)}"]) for x in THRESHOLDS})
        scan["auc_dice_scan_cvpr"] = cvpr_auc(curve, scenario)
    latencies = [r.latency_ms for r in interactions if not r.carried_forward and not math.isnan(r.latency_ms)]
    return CaseRow(
        **keys.__dict__, n_lesions=len(lesions), n_lesions_prompted=min(scenario.lesions, len(lesions)),
        gt_volume_ml=float(sum(les.volume_ml for les in lesions)),
        n_interactions=sum(not r.carried_forward and not r.lesion_free for r in interactions),
        dice_scan=scan_dice, nsd_scan=surf.nsd, nsd_cvpr_scan=gated_nsd(surf.nsd, scan_dice),
        hd95_scan_mm=surf.hd95_mm, diagonal_mm=diagonal_mm(volume), **counts,
        fp_voxel_volume_ml=(n_pred - inter) * voxel_ml, fn_voxel_volume_ml=(n_truth - inter) * voxel_ml, **scan,
        mean_latency_ms=float(np.mean(latencies)) if latencies else math.nan,
        wall_time_s=wall_time_s, model_start_s=model_start_s, peak_memory_mb=peak_memory_mb, peak_gpu_memory_mb=peak_gpu_memory_mb,
        status="ok", error="",
    )

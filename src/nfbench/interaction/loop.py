"""The simulated user: runs one scenario on one case and records every interaction (DESIGN §2).

Everything per click is done on crops: the scope of a lesion session is the lesion's box joined with
the prediction's box (so every error voxel is inside it), and scan-level counts are updated from the
crop instead of recounted over the whole volume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nfbench.bbox import mask_bbox, pad_bbox, union_bbox
from nfbench.interaction.policies import DEFAULT_PATCH_SIZE, next_clicks
from nfbench.interaction.scenarios import Scenario
from nfbench.io.volume import Volume
from nfbench.lesions import Lesion
from nfbench.metrics.curves import auc, carry_forward, noc, reached
from nfbench.metrics.overlap import dice, dice_from_counts
from nfbench.metrics.surface import surface_metrics
from nfbench.models.base import InteractiveModel, Session, check_prediction
from nfbench.results.schema import THRESHOLDS
from nfbench.types import BoolMask, Box, BoxSlices, Click

__all__ = ["CaseResult", "simulate_case", "coronal_box"]

ProgressHook = Callable[[int, int], None]  # (sessions done, sessions in all)


@dataclass
class CaseResult:
    """Rows produced for one case (without the run keys) and its final scan prediction."""

    clicks: list[dict] = field(default_factory=list)
    interactions: list[dict] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    scan_curve: list[float] = field(default_factory=list)
    prediction: BoolMask | None = None


def _first_click_policy(scenario: Scenario) -> str:
    # The first click of a lesion is its centre; `center-voxel` keeps the voxel-unit rule.
    return "center-voxel" if scenario.click_policy == "center-voxel" else "center"


class _ScanCounts:
    """|prediction|, |prediction ∩ truth| and |truth| of the scan, updated from crops."""

    def __init__(self, truth: BoolMask) -> None:
        self.truth = truth
        self.n_truth = int(np.count_nonzero(truth))
        self.n_pred = 0
        self.n_inter = 0

    def dice_with(self, union: BoolMask, pred: BoolMask, scope: BoxSlices) -> float:
        """Scan Dice of ``union | pred`` where ``pred`` is empty outside ``scope``."""
        before, combined, truth = union[scope], union[scope] | pred[scope], self.truth[scope]
        n_pred = self.n_pred + int(np.count_nonzero(combined)) - int(np.count_nonzero(before))
        n_inter = self.n_inter + int(np.count_nonzero(combined & truth)) - int(np.count_nonzero(before & truth))
        return dice_from_counts(n_inter, n_pred, self.n_truth)

    def add(self, union: BoolMask, pred: BoolMask, scope: BoxSlices) -> None:
        """Merge ``pred`` (empty outside ``scope``) into ``union`` in place."""
        truth = self.truth[scope]
        self.n_pred -= int(np.count_nonzero(union[scope]))
        self.n_inter -= int(np.count_nonzero(union[scope] & truth))
        union[scope] |= pred[scope]
        self.n_pred += int(np.count_nonzero(union[scope]))
        self.n_inter += int(np.count_nonzero(union[scope] & truth))


def _click_rows(clicks: list[Click], volume: Volume, lesion_id: int, interaction: int, start: int) -> list[dict]:
    rows = []
    for order, click in enumerate(clicks, start=start):
        x, y, z = volume.ijk_to_mm(click.ijk)
        i, j, k = click.ijk
        rows.append(dict(lesion_id=lesion_id, interaction=interaction, click_order=order, i=i, j=j, k=k,
                         x_mm=float(x), y_mm=float(y), z_mm=float(z), positive=click.positive))
    return rows


def _give_clicks(session: Session, model: InteractiveModel, clicks: list[Click], shape: tuple[int, ...]) -> tuple[BoolMask, float]:
    start = time.perf_counter()
    for click in clicks:
        session.add_click(click)
    pred = check_prediction(model.name, session.predict(), shape)
    return pred, (time.perf_counter() - start) * 1000.0


def coronal_box(instances: np.ndarray, lesion: Lesion) -> Box:
    """The lesion's 2D bounding box on the coronal slice (axis 1) where it has most voxels."""
    mask = instances[lesion.bbox] == lesion.lesion_id
    j = int(np.argmax(np.count_nonzero(mask, axis=(0, 2))))
    plane = mask[:, j, :]
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    i0, k0, j0 = lesion.bbox[0].start, lesion.bbox[2].start, lesion.bbox[1].start
    return Box((i0 + rows[0], j0 + j, k0 + cols[0]), (i0 + rows[-1] + 1, j0 + j + 1, k0 + cols[-1] + 1))


def _tile_aligned(scope: BoxSlices, tile: tuple[int, int, int], shape: tuple[int, ...]) -> BoxSlices:
    """Grow a box to whole tiles of the volume's patch grid, so a crop's patches are the volume's."""
    return tuple(
        slice(s.start // n * n, min(-(-s.stop // n) * n, size)) for s, n, size in zip(scope, tile, shape)
    )  # type: ignore[return-value]


def _curve_summary(values: list[float], budget: int) -> dict:
    filled, _ = carry_forward(np.asarray(values, dtype=float), budget)
    out = {"auc_dice": auc(filled, normalise=False), "auc_dice_norm": auc(filled, normalise=True)}
    for x in THRESHOLDS:
        pct = round(x * 100)
        out[f"noc_{pct}"] = noc(filled, x, budget)
        out[f"reached_{pct}"] = reached(filled, x)
    return out


def _lesion_session(
    model: InteractiveModel,
    session: Session,
    volume: Volume,
    instances: np.ndarray,
    lesion: Lesion,
    scenario: Scenario,
    scan: _ScanCounts,
    union: BoolMask,
    result: CaseResult,
    *,
    rng: np.random.Generator,
    surface: bool,
    tolerance_mm: float,
) -> None:
    shape, spacing = volume.shape, volume.spacing
    lesion_box = pad_bbox(lesion.bbox, 1, shape)
    pred: BoolMask | None = None
    scope = lesion_box
    session.reset()
    n_boxes = 0
    if scenario.boxes and "box" in model.capabilities:
        session.add_box(coronal_box(instances, lesion))
        n_boxes = 1
    curve: list[float] = []
    n_clicks_total = 0
    rows: list[dict] = []
    for t in range(1, scenario.budget + 1):
        tick = time.perf_counter()
        policy = _first_click_policy(scenario) if t == 1 else scenario.click_policy
        if policy == "patch":
            scope = _tile_aligned(scope, DEFAULT_PATCH_SIZE, shape)
        truth = instances[scope] == lesion.lesion_id
        ignore = (instances[scope] > 0) & ~truth
        current = np.zeros(truth.shape, bool) if pred is None else pred[scope]
        local = next_clicks(current, truth, spacing=spacing, rng=rng, policy=policy, ignore=ignore, alpha=scenario.alpha)
        if not local:
            break  # nothing left to correct: the lesion is segmented perfectly
        offset = [s.start for s in scope]
        clicks = [Click(tuple(o + v for o, v in zip(offset, c.ijk)), c.positive) for c in local]
        overhead = time.perf_counter() - tick
        pred, latency = _give_clicks(session, model, clicks, shape)
        tick = time.perf_counter()
        scope = pad_bbox(union_bbox(lesion.bbox, mask_bbox(pred)), 1, shape)
        truth = instances[scope] == lesion.lesion_id
        ignore = (instances[scope] > 0) & ~truth
        crop = pred[scope]
        d = dice(crop, truth, ignore=ignore)
        nsd = surface_metrics(crop & ~ignore, truth, spacing=spacing, tolerance_mm=tolerance_mm).nsd if surface else math.nan
        row = dict(lesion_id=lesion.lesion_id, lesion_rank=lesion.rank, lesion_volume_ml=lesion.volume_ml,
                   interaction=t, n_clicks=len(clicks), n_boxes=n_boxes if t == 1 else 0, dice_lesion=d, dice_lesion_strict=dice(crop, truth),
                   dice_scan=scan.dice_with(union, pred, scope), nsd_lesion=nsd, latency_ms=latency,
                   carried_forward=False)
        result.clicks += _click_rows(clicks, volume, lesion.lesion_id, t, n_clicks_total + 1)
        n_clicks_total += len(clicks)
        curve.append(d)
        row["overhead_ms"] = (overhead + time.perf_counter() - tick) * 1000.0
        rows.append(row)
        if scenario.stop_dice is not None and d >= scenario.stop_dice:
            break
    n_used = len(rows)
    if rows:
        for t in range(n_used + 1, scenario.budget + 1):
            rows.append({**rows[-1], "interaction": t, "n_clicks": 0, "n_boxes": 0, "latency_ms": math.nan,
                         "overhead_ms": math.nan, "carried_forward": True})
    result.interactions += rows
    final = pred if pred is not None else np.zeros(shape, bool)
    scope = pad_bbox(union_bbox(lesion.bbox, mask_bbox(final)), 1, shape)
    truth = instances[scope] == lesion.lesion_id
    ignore = (instances[scope] > 0) & ~truth
    surf = surface_metrics(final[scope] & ~ignore, truth, spacing=spacing, tolerance_mm=tolerance_mm)
    last = rows[n_used - 1] if rows else {}
    result.lesions.append(dict(
        lesion_id=lesion.lesion_id, lesion_rank=lesion.rank, lesion_volume_ml=lesion.volume_ml,
        n_interactions=n_used, stopped_early=n_used < scenario.budget,
        dice_lesion=last.get("dice_lesion", 0.0), dice_lesion_strict=last.get("dice_lesion_strict", 0.0),
        nsd_lesion=surf.nsd, hd95_lesion_mm=surf.hd95_mm, **_curve_summary(curve or [0.0], scenario.budget),
    ))
    scan.add(union, final, scope)


def _global_session(
    model: InteractiveModel,
    session: Session,
    volume: Volume,
    instances: np.ndarray,
    lesions: list[Lesion],
    scenario: Scenario,
    truth: BoolMask,
    result: CaseResult,
    *,
    rng: np.random.Generator,
    progress: ProgressHook | None,
) -> BoolMask:
    shape, spacing = volume.shape, volume.spacing
    truth_box = mask_bbox(truth)
    total_ml = float(sum(les.volume_ml for les in lesions))
    session.reset()
    pred = np.zeros(shape, bool)
    budget = min(scenario.budget, len(lesions)) if scenario.name == "global-single" else scenario.budget
    rows: list[dict] = []
    n_clicks_total = 0
    for t in range(1, budget + 1):
        tick = time.perf_counter()
        if scenario.name == "global-single":
            lesion = lesions[t - 1]
            box = pad_bbox(lesion.bbox, 1, shape)
            target = instances[box] == lesion.lesion_id
            local = next_clicks(np.zeros(target.shape, bool), target, spacing=spacing, rng=rng,
                                policy=_first_click_policy(scenario), ignore=(instances[box] > 0) & ~target)
            clicks = [Click(tuple(s.start + v for s, v in zip(box, c.ijk)), c.positive) for c in local]
        else:
            clicks = next_clicks(pred, truth, spacing=spacing, rng=rng, policy=scenario.click_policy, alpha=scenario.alpha)
        if not clicks:
            break
        overhead = time.perf_counter() - tick
        pred, latency = _give_clicks(session, model, clicks, shape)
        tick = time.perf_counter()
        scope = union_bbox(truth_box, mask_bbox(pred))
        d = dice(pred[scope], truth[scope]) if scope is not None else 1.0
        result.clicks += _click_rows(clicks, volume, 0, t, n_clicks_total + 1)
        n_clicks_total += len(clicks)
        rows.append(dict(lesion_id=0, lesion_rank=0, lesion_volume_ml=total_ml, interaction=t, n_clicks=len(clicks), n_boxes=0,
                         dice_lesion=math.nan, dice_lesion_strict=math.nan, dice_scan=d, nsd_lesion=math.nan,
                         latency_ms=latency, carried_forward=False,
                         overhead_ms=(overhead + time.perf_counter() - tick) * 1000.0))
        if progress is not None:
            progress(t, budget)
        if scenario.corrective and scenario.stop_dice is not None and d >= scenario.stop_dice:
            break
    if rows:
        for t in range(len(rows) + 1, budget + 1):
            rows.append({**rows[-1], "interaction": t, "n_clicks": 0, "n_boxes": 0, "latency_ms": math.nan,
                         "overhead_ms": math.nan, "carried_forward": True})
    result.interactions += rows
    result.scan_curve = [r["dice_scan"] for r in rows]
    return pred


def simulate_case(
    model: InteractiveModel,
    volume: Volume,
    instances: np.ndarray,
    lesions: list[Lesion],
    scenario: Scenario,
    *,
    rng: np.random.Generator,
    surface: bool = False,
    tolerance_mm: float = 2.0,
    progress: ProgressHook | None = None,
) -> CaseResult:
    """Run ``scenario`` with ``model`` on one case.

    Parameters
    ----------
    volume : Volume
        The image, canonical RAS, float32.
    instances : ndarray
        Instance map of the ground truth in the same grid (0 = background).
    lesions : list of Lesion
        The lesion table of ``instances``, largest first (the K largest are prompted).
    surface : bool
        Also compute the lesion NSD after every interaction (always done at the end of a lesion).
    progress : callable, optional
        Called with (sessions or interactions done, total) so a caller can show progress.
    """
    session = model.start(volume)
    truth = instances > 0
    result = CaseResult()
    prompted = lesions[: scenario.lesions]
    if scenario.per_lesion:
        union = np.zeros(volume.shape, bool)
        scan = _ScanCounts(truth)
        for n, lesion in enumerate(prompted, start=1):
            _lesion_session(model, session, volume, instances, lesion, scenario, scan, union, result,
                            rng=rng, surface=surface, tolerance_mm=tolerance_mm)
            if progress is not None:
                progress(n, len(prompted))
        result.prediction = union
    else:
        result.prediction = _global_session(model, session, volume, instances, prompted, scenario, truth, result,
                                            rng=rng, progress=progress)
    return result

"""The simulated user: runs one scenario on one case and records every interaction (DESIGN §2).

Everything per interaction is done on crops: the engine keeps the session's current mask itself
(assembled from the model's answers, which may be crops) together with its bounding box, a lesion
session's scope is the lesion's box joined with that box, and scan-level counts are updated from
the crop instead of recounted over the whole volume.

Every session has exactly one row per interaction 1..budget: after an early stop (or once a
``global-single`` scan runs out of lesions) the last row is carried forward, flagged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from nfbench.bbox import mask_bbox, pad_bbox, union_bbox
from nfbench.interaction.boxes import largest_slice_box, middle_slice_box
from nfbench.interaction.policies import DEFAULT_PATCH_MM, next_clicks, patch_voxels
from nfbench.interaction.scenarios import Scenario
from nfbench.interaction.scoring import gated_nsd, score_lesion
from nfbench.io.volume import Volume
from nfbench.lesions import Lesion
from nfbench.metrics.overlap import dice, dice_from_counts
from nfbench.metrics.surface import surface_metrics
from nfbench.models.base import InteractiveModel, Prediction, Session, check_prediction
from nfbench.results.schema import ClickRow, InteractionRow, LesionRow, RunKeys
from nfbench.types import BoolMask, Box, BoxSlices, Click

__all__ = ["CaseResult", "simulate_case"]

ProgressHook = Callable[[int, int], None]  # (sessions or interactions done, total)


@dataclass
class CaseResult:
    """Rows produced for one scenario on one case, and the case's final scan prediction."""

    clicks: list[ClickRow] = field(default_factory=list)
    interactions: list[InteractionRow] = field(default_factory=list)
    lesions: list[LesionRow] = field(default_factory=list)
    prediction: BoolMask | None = None


class _Answer:
    """The session's current mask, kept by the engine from the model's answers, and its box."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.mask = np.zeros(shape, bool)
        self.box: BoxSlices | None = None

    def clear(self) -> None:
        if self.box is not None:
            self.mask[self.box] = False
        self.box = None

    def update(self, answer: Prediction) -> None:
        if any(s.stop <= s.start for s in answer.box):
            return  # nothing changed
        if answer.mask.shape == self.mask.shape:
            np.copyto(self.mask, answer.mask)
            self.box = mask_bbox(self.mask)
            return
        self.mask[answer.box] = answer.mask
        region = union_bbox(self.box, answer.box)
        inner = mask_bbox(self.mask[region])
        self.box = None if inner is None else tuple(
            slice(r.start + s.start, r.start + s.stop) for r, s in zip(region, inner))  # type: ignore[assignment]


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


def _tile_aligned(scope: BoxSlices, tile: tuple[int, int, int], shape: tuple[int, ...]) -> BoxSlices:
    """Grow a box to whole tiles of the volume's patch grid, so a crop's patches are the volume's."""
    return tuple(
        slice(s.start // n * n, min(-(-s.stop // n) * n, size)) for s, n, size in zip(scope, tile, shape)
    )  # type: ignore[return-value]


def _pad_rows(rows: list[InteractionRow], budget: int) -> list[InteractionRow]:
    """Carry a session's last row forward to the budget (the one place sessions are carried)."""
    last = rows[-1]
    return rows + [replace(last, interaction=t, n_clicks=0, n_boxes=0, latency_ms=math.nan, overhead_ms=math.nan,
                           carried_forward=True) for t in range(len(rows) + 1, budget + 1)]


@dataclass
class _Simulation:
    """One scenario on one case: the model's session, the truth and where the rows go."""

    model: InteractiveModel
    session: Session
    volume: Volume
    instances: np.ndarray
    scenario: Scenario
    keys: RunKeys
    rng: np.random.Generator
    surface: bool
    tolerance_mm: float
    result: CaseResult = field(default_factory=CaseResult)

    def __post_init__(self) -> None:
        self.shape = self.volume.shape
        self.spacing = self.volume.spacing
        self.answer = _Answer(self.shape)
        caps = self.model.capabilities
        self.clicks_allowed = "click" in caps
        self.boxes_allowed = self.scenario.boxes and "box" in caps
        patch_mm = getattr(self.model, "patch_size_mm", None) or DEFAULT_PATCH_MM
        self.patch = patch_voxels(patch_mm, self.spacing)

    # -- prompts ----------------------------------------------------------------------------------
    def box_of(self, lesion: Lesion) -> Box:
        if self.scenario.box_step:
            return middle_slice_box(self.instances, lesion, self.rng)
        return largest_slice_box(self.instances, lesion)

    def prompt(self, clicks: list[Click], boxes: list[Box]) -> float:
        """Give the prompts, ask for the mask; the model's time in ms (NaN when nothing was given)."""
        if not clicks and not boxes:
            return math.nan
        start = time.perf_counter()
        for box in boxes:
            self.session.add_box(box)
        for click in clicks:
            self.session.add_click(click)
        answer = check_prediction(self.keys.model, self.session.predict(), self.shape)  # the registered name, as in the tables
        latency = (time.perf_counter() - start) * 1000.0
        self.answer.update(answer)
        return latency

    def reset(self) -> None:
        self.session.reset()
        self.answer.clear()

    def record_clicks(self, clicks: list[Click], lesion_id: int, interaction: int, start: int) -> None:
        for order, click in enumerate(clicks, start=start):
            x, y, z = self.volume.ijk_to_mm(click.ijk)
            i, j, k = click.ijk
            self.result.clicks.append(ClickRow(
                **self.keys.__dict__, lesion_id=lesion_id, interaction=interaction, click_order=order, i=i, j=j, k=k,
                x_mm=float(x), y_mm=float(y), z_mm=float(z), positive=click.positive))

    # -- sessions ---------------------------------------------------------------------------------
    def lesion_session(self, lesion: Lesion, scan: _ScanCounts, union: BoolMask) -> None:
        scenario, shape, spacing = self.scenario, self.shape, self.spacing
        self.reset()
        box = [self.box_of(lesion)] if self.boxes_allowed else []
        scope = pad_bbox(lesion.bbox, 1, shape)
        rows: list[InteractionRow] = []
        n_clicks = 0
        for t in range(1, scenario.budget + 1):
            tick = time.perf_counter()
            boxes = box if t == 1 else []
            clicks: list[Click] = []
            if self.clicks_allowed and not (t == 1 and scenario.box_step):
                # A corrective scenario's clicks after a box step correct the box's answer (the
                # challenge's rule); lesion-single's one click is the lesion's centre whatever the box gave.
                corrects = scenario.corrective and bool(rows)
                policy = scenario.click_policy if corrects else scenario.first_click_policy
                if policy == "patch":
                    scope = _tile_aligned(scope, self.patch, shape)
                truth = self.instances[scope] == lesion.lesion_id
                ignore = (self.instances[scope] > 0) & ~truth
                current = self.answer.mask[scope] if corrects else np.zeros(truth.shape, bool)
                local = next_clicks(current, truth, spacing=spacing, rng=self.rng, policy=policy,
                                    ignore=ignore, alpha=scenario.alpha, patch_size=self.patch)
                if not local:
                    break  # nothing left to correct: the lesion is segmented perfectly
                clicks = [Click(tuple(s.start + v for s, v in zip(scope, c.ijk)), c.positive) for c in local]
            elif not boxes and not (t == 1 and scenario.box_step):
                break  # a box-only model after its box: nothing more to give
            overhead = time.perf_counter() - tick
            latency = self.prompt(clicks, boxes)
            tick = time.perf_counter()
            pred = self.answer.mask
            scope = pad_bbox(union_bbox(lesion.bbox, self.answer.box), 1, shape)
            truth = self.instances[scope] == lesion.lesion_id
            ignore = (self.instances[scope] > 0) & ~truth
            crop = pred[scope]
            d = dice(crop, truth, ignore=ignore)
            nsd = math.nan
            if self.surface or scenario.cvpr_scoring:
                nsd = surface_metrics(crop & ~ignore, truth, spacing=spacing, tolerance_mm=self.tolerance_mm).nsd
            self.record_clicks(clicks, lesion.lesion_id, t, n_clicks + 1)
            n_clicks += len(clicks)
            rows.append(InteractionRow(
                **self.keys.__dict__, lesion_id=lesion.lesion_id, lesion_rank=lesion.rank,
                lesion_volume_ml=lesion.volume_ml, interaction=t, n_clicks=len(clicks), n_boxes=len(boxes),
                dice_lesion=d, dice_lesion_strict=dice(crop, truth), dice_scan=scan.dice_with(union, pred, scope),
                nsd_lesion=nsd, nsd_cvpr_lesion=gated_nsd(nsd, d), latency_ms=latency,
                overhead_ms=(overhead + time.perf_counter() - tick) * 1000.0, carried_forward=False,
                lesion_free=False))
            if scenario.stop_dice is not None and d >= scenario.stop_dice:
                break
        rows = _pad_rows(rows, scenario.budget)
        self.result.interactions += rows
        self.result.lesions.append(score_lesion(
            self.keys, lesion, rows, self.answer.mask, self.answer.box, self.instances, scenario,
            spacing=spacing, tolerance_mm=self.tolerance_mm))
        scope = pad_bbox(union_bbox(lesion.bbox, self.answer.box), 1, shape)
        scan.add(union, self.answer.mask, scope)

    def global_session(self, lesions: list[Lesion], total_ml: float, progress: ProgressHook | None) -> BoolMask:
        """One session over the scan: ``lesions`` are the prompted ones, ``total_ml`` the volume of all."""
        scenario, shape, spacing = self.scenario, self.shape, self.spacing
        truth = self.instances > 0
        truth_box = mask_bbox(truth)  # every lesion, prompted or not: errors can lie on any
        self.reset()
        rows: list[InteractionRow] = []
        n_clicks = 0
        single = scenario.name == "global-single"
        for t in range(1, scenario.budget + 1):
            tick = time.perf_counter()
            boxes: list[Box] = []
            clicks: list[Click] = []
            if single:
                if t > len(lesions):
                    break
                lesion = lesions[t - 1]
                boxes = [self.box_of(lesion)] if self.boxes_allowed else []
                if self.clicks_allowed:
                    box = pad_bbox(lesion.bbox, 1, shape)
                    target = self.instances[box] == lesion.lesion_id
                    local = next_clicks(np.zeros(target.shape, bool), target, spacing=spacing, rng=self.rng,
                                        policy=scenario.first_click_policy, ignore=(self.instances[box] > 0) & ~target)
                    clicks = [Click(tuple(s.start + v for s, v in zip(box, c.ijk)), c.positive) for c in local]
            else:
                boxes = [self.box_of(les) for les in lesions] if t == 1 and self.boxes_allowed else []
                if self.clicks_allowed and not (t == 1 and scenario.box_step):
                    clicks = next_clicks(self.answer.mask, truth, spacing=spacing, rng=self.rng,
                                         policy=scenario.click_policy, alpha=scenario.alpha, patch_size=self.patch,
                                         box=union_bbox(truth_box, self.answer.box))
                    if not clicks:
                        break
                elif not boxes and not (t == 1 and scenario.box_step):
                    break
            overhead = time.perf_counter() - tick
            latency = self.prompt(clicks, boxes)
            tick = time.perf_counter()
            scope = union_bbox(truth_box, self.answer.box)
            d = dice(self.answer.mask[scope], truth[scope]) if scope is not None else 1.0
            self.record_clicks(clicks, 0, t, n_clicks + 1)
            n_clicks += len(clicks)
            rows.append(InteractionRow(
                **self.keys.__dict__, lesion_id=0, lesion_rank=0, lesion_volume_ml=total_ml, interaction=t,
                n_clicks=len(clicks), n_boxes=len(boxes), dice_lesion=math.nan, dice_lesion_strict=math.nan,
                dice_scan=d, nsd_lesion=math.nan, nsd_cvpr_lesion=math.nan, latency_ms=latency,
                overhead_ms=(overhead + time.perf_counter() - tick) * 1000.0, carried_forward=False,
                lesion_free=False))
            if progress is not None:
                progress(t, scenario.budget)
            if scenario.corrective and scenario.stop_dice is not None and d >= scenario.stop_dice:
                break
        self.result.interactions += _pad_rows(rows, scenario.budget)
        return self.answer.mask.copy()

    def lesion_free(self) -> None:
        """A scan without lesions has nothing to prompt: one scan-level session, flagged, no model call."""
        row = InteractionRow(
            **self.keys.__dict__, lesion_id=0, lesion_rank=0, lesion_volume_ml=0.0, interaction=1, n_clicks=0,
            n_boxes=0, dice_lesion=math.nan, dice_lesion_strict=math.nan, dice_scan=1.0, nsd_lesion=math.nan,
            nsd_cvpr_lesion=math.nan, latency_ms=math.nan, overhead_ms=0.0, carried_forward=False, lesion_free=True)
        self.result.interactions += _pad_rows([row], self.scenario.budget)
        self.result.prediction = np.zeros(self.shape, bool)


def simulate_case(
    model: InteractiveModel,
    session: Session,
    volume: Volume,
    instances: np.ndarray,
    lesions: list[Lesion],
    scenario: Scenario,
    keys: RunKeys,
    *,
    rng: np.random.Generator,
    surface: bool = False,
    tolerance_mm: float = 2.0,
    progress: ProgressHook | None = None,
) -> CaseResult:
    """Run ``scenario`` on one case with a session of ``model`` started on ``volume``.

    The session is reset before every lesion (and at the start), so one session serves every
    scenario of the case.

    Parameters
    ----------
    volume : Volume
        The image, canonical RAS, float32.
    instances : ndarray
        Instance map of the ground truth in the same grid (0 = background).
    lesions : list of Lesion
        The lesion table of ``instances``, largest first (the K largest are prompted).
    keys : RunKeys
        The run keys every row of this scenario and case carries.
    surface : bool
        Also compute the lesion NSD after every interaction (always done at the end of a lesion,
        and after every interaction under the cvpr25 preset).
    progress : callable, optional
        Called with (sessions or interactions done, total) so a caller can show progress.
    """
    sim = _Simulation(model, session, volume, instances, scenario, keys, rng, surface, tolerance_mm)
    prompted = lesions[: scenario.lesions]
    if not prompted:
        sim.lesion_free()
    elif scenario.per_lesion:
        union = np.zeros(volume.shape, bool)
        scan = _ScanCounts(instances > 0)
        for n, lesion in enumerate(prompted, start=1):
            sim.lesion_session(lesion, scan, union)
            if progress is not None:
                progress(n, len(prompted))
        sim.result.prediction = union
    else:
        total_ml = float(sum(les.volume_ml for les in lesions))
        sim.result.prediction = sim.global_session(prompted, total_ml, progress)
    return sim.result

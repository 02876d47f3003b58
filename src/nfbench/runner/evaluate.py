"""Evaluate models × scenarios over the cases of a dataset into one resumable run folder."""

from __future__ import annotations

import platform
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import nfbench
from nfbench.interaction.loop import CaseResult, simulate_case
from nfbench.interaction.scenarios import Scenario
from nfbench.io.dataset import Case, discover_dataset
from nfbench.io.volume import Volume, VolumeError, load_volume, save_volume
from nfbench.lesions import Lesion, instance_map, lesion_table
from nfbench.metrics.curves import auc, carry_forward, noc
from nfbench.metrics.detection import detection
from nfbench.metrics.overlap import dice
from nfbench.metrics.surface import surface_metrics
from nfbench.models.base import InteractiveModel
from nfbench.results.schema import THRESHOLDS
from nfbench.results.store import RunStore, case_key
from nfbench.runner.memory import PeakMemory
from nfbench.runner.progress import RunProgress

__all__ = ["EvaluationPlan", "EvaluationSummary", "evaluate", "versions"]


@dataclass(frozen=True)
class EvaluationPlan:
    """Everything that decides the numbers of a run; written to its config.json."""

    data: Path
    test_sets: tuple[str, ...]
    models: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    seed: int = 0
    fold: int | None = None
    cases: tuple[str, ...] = ()  # empty: every case of each test set
    surface_metrics: bool = False
    tolerance_mm: float = 2.0
    recompute_instances: bool = False

    def config(self, run_id: str) -> dict:
        return {
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": str(Path(self.data).resolve()),
            "test_sets": list(self.test_sets),
            "models": list(self.models),
            "scenarios": [s.name for s in self.scenarios],
            "scenario_options": {s.name: s.as_dict() for s in self.scenarios},
            "click_policy": ",".join(sorted({s.click_policy for s in self.scenarios})),
            "seed": self.seed,
            "fold": self.fold,
            "cases": list(self.cases),
            "surface_metrics": self.surface_metrics,
            "tolerance_mm": self.tolerance_mm,
            "recompute_instances": self.recompute_instances,
            "versions": versions(),
        }


@dataclass
class EvaluationSummary:
    run: Path
    n_cases: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case key, error)
    skipped: int = 0


def versions() -> dict[str, str]:
    """Versions that can change the numbers (NumPy's random streams are tied to its version)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"nfbench": nfbench.__version__, "python": sys.version.split()[0]}
    for name in ("numpy", "scipy", "scikit-image", "connected-components-3d", "edt", "nibabel", "pandas"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["platform"] = platform.platform()
    return found


def _case_rng(seed: int, scenario: str, test_set: str, case: str) -> np.random.Generator:
    # One stream per (scenario, case): every model meets the same random choices, and a resumed
    # run draws exactly what the uninterrupted one drew.
    return np.random.default_rng([seed, zlib.crc32(f"{scenario}/{test_set}/{case}".encode())])


@dataclass
class _LoadedCase:
    image: Volume
    label: Volume
    instances: np.ndarray
    lesions: list[Lesion]


def _load_case(case: Case, *, recompute: bool) -> _LoadedCase:
    if case.label is None:
        raise VolumeError(f"{case.image}: image without label")
    image = load_volume(case.image, dtype=np.float32)
    label = load_volume(case.label)
    if image.shape != label.shape:
        raise VolumeError(f"{case.label}: shape {label.shape} differs from {case.image.name} {image.shape}")
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise VolumeError(f"{case.label}: affine differs from {case.image.name}; run `nfbench data check`")
    instances = instance_map(label.data, recompute=recompute)
    return _LoadedCase(image, label, instances, lesion_table(instances, affine=image.affine))


def _scan_curve_summary(curve: list[float], budget: int) -> dict:
    if not curve:
        return {"auc_dice_scan": np.nan, "auc_dice_scan_norm": np.nan}
    filled, _ = carry_forward(np.asarray(curve, float), budget)
    out = {"auc_dice_scan": auc(filled, normalise=False), "auc_dice_scan_norm": auc(filled, normalise=True)}
    out.update({f"noc_{round(x * 100)}_scan": noc(filled, x, budget) for x in THRESHOLDS})
    return out


def _case_row(loaded: _LoadedCase, scenario: Scenario, result: CaseResult, tolerance_mm: float) -> dict:
    pred, truth = result.prediction, loaded.instances > 0
    spacing = loaded.image.spacing
    surf = surface_metrics(pred, truth, spacing=spacing, tolerance_mm=tolerance_mm)
    row = dict(
        n_lesions=len(loaded.lesions),
        n_lesions_prompted=min(scenario.lesions, len(loaded.lesions)),
        gt_volume_ml=float(sum(les.volume_ml for les in loaded.lesions)),
        n_interactions=sum(1 for r in result.interactions if not r["carried_forward"]),
        dice_scan=dice(pred, truth), nsd_scan=surf.nsd, hd95_scan_mm=surf.hd95_mm,
    )
    for suffix, iou in (("any", 0.0), ("iou10", 0.1)):
        det = detection(pred, loaded.instances, spacing=spacing, iou_threshold=iou)
        row.update({f"tp_{suffix}": det.tp, f"fp_{suffix}": det.fp, f"fn_{suffix}": det.fn,
                    f"precision_{suffix}": det.precision, f"recall_{suffix}": det.recall, f"f1_{suffix}": det.f1})
        if suffix == "any":
            row.update(fp_volume_ml=det.fp_volume_ml, fn_volume_ml=det.fn_volume_ml)
    if not scenario.per_lesion:
        row.update(_scan_curve_summary(result.scan_curve, scenario.budget))
    latencies = [r["latency_ms"] for r in result.interactions if not r["carried_forward"]]
    row["mean_latency_ms"] = float(np.mean(latencies)) if latencies else np.nan
    return row


def _preview(loaded: _LoadedCase, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Coronal projections (along posterior→anterior) for the report's overlays."""
    truth = loaded.instances > 0
    sx, _, sz = loaded.image.spacing
    return {
        "image": loaded.image.data.max(axis=1).astype(np.float32),
        "tp": (pred & truth).any(axis=1),
        "fp": (pred & ~truth).any(axis=1),
        "fn": (truth & ~pred).any(axis=1),
        "spacing": np.array([sx, sz], dtype=np.float32),
    }


def evaluate(
    plan: EvaluationPlan,
    out: str | Path,
    *,
    models: dict[str, InteractiveModel],
    resume: bool = False,
    csv: bool = False,
    save_predictions: bool = False,
    quiet: bool = False,
) -> EvaluationSummary:
    """Run every model × scenario on every case of the plan's test sets, writing ``out``.

    Each case is written atomically when it ends; with ``resume`` the finished cases are kept and
    the tables come out identical to an uninterrupted run. A case that raises is recorded as failed
    (``status``/``error`` in the cases table) and the run goes on.
    """
    out = Path(out)
    store = RunStore(out, plan.config(out.name), resume=resume)
    dataset = discover_dataset(plan.data)
    if not dataset.subsets:
        raise VolumeError("; ".join(str(p) for p in dataset.problems))
    work: list[tuple[str, Case]] = []
    for test_set in plan.test_sets:
        for case in dataset.subset(test_set):
            if not plan.cases or case.name in plan.cases:
                work.append((test_set, case))
    done = store.finished()
    summary = EvaluationSummary(out, n_cases=len(work))
    n_tasks = len(work) * len(plan.models) * len(plan.scenarios)
    with RunProgress(total=n_tasks, quiet=quiet) as progress:
        for test_set, case in work:
            keys = {(m, s.name): case_key(m, s.name, test_set, case.name) for m in plan.models for s in plan.scenarios}
            pending = {k: v for k, v in keys.items() if v not in done}
            summary.skipped += len(keys) - len(pending)
            progress.advance(len(keys) - len(pending))
            if not pending:
                continue
            try:
                loaded: _LoadedCase | Exception = _load_case(case, recompute=plan.recompute_instances)
            except (VolumeError, OSError, ValueError) as err:
                loaded = err
            for (model_name, scenario_name), key in pending.items():
                scenario = next(s for s in plan.scenarios if s.name == scenario_name)
                base = dict(run_id=store.run_id, model=model_name, scenario=scenario.name,
                            click_policy=scenario.click_policy, seed=plan.seed, fold=plan.fold,
                            test_set=test_set, case=case.name)
                progress.start_case(f"{model_name} · {scenario.name} · {case.name}")
                tables, preview = _run_one(plan, store, models[model_name], scenario, test_set, case, loaded, base,
                                           progress, save_predictions)
                store.write_case(key, tables, preview)
                row = tables["cases"][0]
                if row["status"] != "ok":
                    summary.failed.append((key, row["error"]))
                progress.advance(1)
    store.consolidate(csv=csv)
    return summary


def _run_one(
    plan: EvaluationPlan,
    store: RunStore,
    model: InteractiveModel,
    scenario: Scenario,
    test_set: str,
    case: Case,
    loaded: _LoadedCase | Exception,
    base: dict,
    progress: RunProgress,
    save_predictions: bool,
) -> tuple[dict[str, list[dict]], dict[str, np.ndarray] | None]:
    """One model × scenario on one case: its table rows and preview, or a failed cases row."""
    start = time.perf_counter()
    if isinstance(loaded, Exception):
        return {"cases": [{**base, "status": "failed", "error": str(loaded)}]}, None
    try:
        rng = _case_rng(plan.seed, scenario.name, test_set, case.name)
        with PeakMemory() as peak:
            result = simulate_case(model, loaded.image, loaded.instances, loaded.lesions, scenario, rng=rng,
                                   surface=plan.surface_metrics, tolerance_mm=plan.tolerance_mm,
                                   progress=progress.lesion)
            row = _case_row(loaded, scenario, result, plan.tolerance_mm)
        if save_predictions:
            target = store.root / "predictions" / base["model"] / scenario.name / test_set / f"{case.name}.nii.gz"
            save_volume(loaded.label, target, data=result.prediction.astype(np.uint8))
    except Exception as err:  # noqa: BLE001 - a failing model must not stop the run
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, (ValueError, RuntimeError)):
            message += "\n" + traceback.format_exc(limit=3)
        return {"cases": [{**base, "status": "failed", "error": message}]}, None
    wall = time.perf_counter() - start
    tables = {
        "clicks": [{"run_id": base["run_id"], "case": case.name, **r} for r in result.clicks],
        "interactions": [{**base, **r} for r in result.interactions],
        "lesions": [{**base, **r} for r in result.lesions],
        "cases": [{**base, **row, "wall_time_s": wall, "peak_memory_mb": peak.mb, "status": "ok", "error": ""}],
    }
    return tables, _preview(loaded, result.prediction)

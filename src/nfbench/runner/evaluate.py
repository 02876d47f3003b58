"""Evaluate model specs × scenarios over the cases of a dataset into one resumable run folder.

The work is a list of :class:`~nfbench.runner.tasks.Task` (one case of one model, every pending
scenario), run in this process (``jobs=1``) or in a local process pool whose workers each load a
model once; the driver alone writes the run store, so ``jobs=2`` gives the tables of ``jobs=1``.
"""

from __future__ import annotations

import math
import platform
import sys
from dataclasses import dataclass, field, replace
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

import nfbench
from nfbench.interaction.scenarios import Scenario
from nfbench.io.check import grid_problems
from nfbench.io.dataset import Case, Problem, discover_dataset
from nfbench.io.volume import VolumeError
from nfbench.models.base import InteractiveModel
from nfbench.models.registry import card_mismatches
from nfbench.models.spec import ModelSpec
from nfbench.results.store import RunStore
from nfbench.runner.executors import Outcome, run_local
from nfbench.runner.provenance import kept_cases, package_version
from nfbench.runner.progress import RunProgress
from nfbench.runner.tasks import ModelCache, Task

__all__ = ["EvaluationPlan", "EvaluationSummary", "evaluate", "versions", "select_cases", "plan_tasks", "prompt_problems"]


@dataclass(frozen=True)
class EvaluationPlan:
    """Everything that decides the numbers of a run; written to its config.json."""

    data: Path
    test_sets: tuple[str, ...]
    models: tuple[ModelSpec, ...]
    scenarios: tuple[Scenario, ...]
    seed: int = 0
    fold: int | None = None
    cases: tuple[str, ...] = ()  # empty: every case of each test set
    surface_metrics: bool = False
    tolerance_mm: float = 2.0
    recompute_instances: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(m if isinstance(m, ModelSpec) else ModelSpec(m) for m in self.models))
        names = [m.name for m in self.models]
        if not names:
            raise ValueError("no model to evaluate")
        if len(set(names)) != len(names):
            raise ValueError(f"model {next(n for n in names if names.count(n) > 1)!r} is given twice; "
                             "compare two weights of one model in two runs")
        if not self.scenarios:
            raise ValueError("no scenario to run")
        if not (math.isfinite(self.tolerance_mm) and self.tolerance_mm > 0):
            raise ValueError(f"the NSD tolerance must be a positive number of mm, got {self.tolerance_mm}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"the seed must be a whole number >= 0, got {self.seed}")

    def config(self, run_id: str) -> dict:
        return {
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": str(Path(self.data).resolve()),
            "test_sets": list(self.test_sets),
            "models": [m.name for m in self.models],
            "model_specs": [m.record() for m in self.models],
            "scenarios": [s.name for s in self.scenarios],
            "scenario_options": {s.name: s.as_dict() for s in self.scenarios},
            "click_policy": ",".join(sorted({s.recorded_policy for s in self.scenarios})),
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
    evaluated: int = 0


def versions() -> dict[str, str]:
    """Versions that can change the numbers (NumPy's random streams are tied to its version)."""
    found = {"nfbench": nfbench.__version__, "python": sys.version.split()[0]}
    for name in ("numpy", "scipy", "scikit-image", "connected-components-3d", "edt", "nibabel", "pandas", "torch"):
        found[name] = package_version(name)
    found["platform"] = platform.platform()
    return found


def prompt_problems(name: str, capabilities: frozenset[str], scenarios: Iterable[Scenario]) -> tuple[list[str], list[str]]:
    """How model ``name`` meets the prompts of ``scenarios``: what refuses the run (a box-only model
    where no box is given) and what a reader should know (a click-only model under a box step
    answers nothing there: Dice 0 at interaction 1, its clicks start at 2)."""
    refusals, notes = [], []
    for scenario in scenarios:
        if capabilities and "click" not in capabilities and not scenario.boxes:
            refusals.append(f"model {name!r} takes boxes only and scenario {scenario.name!r} gives no boxes "
                            "(ask for boxes, or use the cvpr25 preset)")
        if "box" not in capabilities and scenario.box_step:
            notes.append(f"model {name!r} takes no boxes: in {scenario.name!r} ({scenario.preset}) its box step "
                         "(interaction 1) answers nothing and scores 0; its clicks start at interaction 2")
    return refusals, notes


def _check_prompts(plan: EvaluationPlan, models: dict[str, InteractiveModel]) -> list[str]:
    """Refuse, before any work, a model that could not be prompted in a scenario of the plan; the
    notes for the others (:func:`prompt_problems`) and options unlike their weights' card."""
    notes = []
    for spec in plan.models:
        refusals, found = prompt_problems(spec.name, frozenset(models[spec.name].capabilities), plan.scenarios)
        if refusals:
            raise ValueError(refusals[0])
        notes += card_mismatches(spec) + found
    return notes


def select_cases(data: Path, test_sets: tuple[str, ...], cases: tuple[str, ...] = (), *,
                 check: bool = True) -> list[tuple[str, Case]]:
    """The (test set, case) pairs of ``test_sets`` in the dataset ``data``, in order (only ``cases``
    when given; ``check=False`` skips the header checks).

    Raises ``ValueError`` for a test set or a case that the dataset does not have, and
    ``VolumeError`` for a case without a label or whose label's header does not match its image
    (the messages of ``nfbench data check``); label values are checked when a case is loaded.
    """
    dataset = discover_dataset(data)
    if not dataset.subsets:
        raise VolumeError("; ".join(str(p) for p in dataset.problems))
    missing_sets = [t for t in test_sets if t not in dataset.subsets]
    if missing_sets:
        hints = [f"images{t}" for t in missing_sets if f"images{t}" in dataset.subsets]
        hint = f" (the folder names in full: {', '.join(hints)})" if hints else ""
        raise ValueError(f"{data}: no test set {', '.join(map(repr, missing_sets))}; "
                         f"it has {', '.join(sorted(dataset.subsets))}{hint}")
    chosen = [(t, c) for t in test_sets for c in dataset.subset(t) if not cases or c.name in cases]
    unknown = sorted(set(cases) - {c.name for _, c in chosen})
    if unknown:
        names = sorted({c.name for t in test_sets for c in dataset.subset(t)})
        raise ValueError(f"{data}: no case {', '.join(map(repr, unknown))} in {', '.join(test_sets)} "
                         f"(it has {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    if not check:
        return chosen
    problems = [str(p) for _, c in chosen
                for p in ([Problem(c.image, "image without label")] if c.label is None
                          else grid_problems(c.image, c.label))]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        hints = []
        if any("mm apart > tolerance" in p for p in problems):
            hints.append("labels must lie on their image's grid: where the difference is only rounding, give the "
                         "label its image's affine (nfbench data check --affine-tolerance MM tells which)")
        if any(p.endswith("image without label") for p in problems):
            hints.append("--case evaluates only the cases named")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise VolumeError(f"{len(problems)} problem(s) with the cases to evaluate: {'; '.join(problems[:5])}{more}{hint}")
    return chosen


def plan_tasks(
    plan: EvaluationPlan, cases: list[tuple[str, Case]], run_id: str, done: set[str], predictions: Path | None
) -> tuple[list[Task], int]:
    """The tasks of the plan whose scenarios are not all finished, and the count of finished
    (model, scenario, case) keys."""
    tasks, skipped = [], 0
    for test_set, case in cases:
        for spec in plan.models:
            task = Task(run_id, test_set, case.name, case.image, case.label, spec, plan.scenarios, seed=plan.seed,
                        fold=plan.fold, surface_metrics=plan.surface_metrics, tolerance_mm=plan.tolerance_mm,
                        recompute_instances=plan.recompute_instances, predictions=predictions)
            pending = tuple(s for s in plan.scenarios if task.key(s) not in done)
            skipped += len(plan.scenarios) - len(pending)
            if pending:
                tasks.append(replace(task, scenarios=pending))
    return tasks, skipped


def evaluate(
    plan: EvaluationPlan,
    out: str | Path,
    *,
    models: dict[str, InteractiveModel] | None = None,
    jobs: int = 1,
    resume: bool = False,
    csv: bool = False,
    save_predictions: bool = False,
    quiet: bool = False,
    accept_nfbench_version: bool = False,
    on_warning: Callable[[str], None] = lambda note: None,
) -> EvaluationSummary:
    """Run every model × scenario on every case of the plan's test sets, writing ``out``.

    ``models`` gives already loaded models by name (notebooks, tests); the others are loaded from
    the plan's specs, which checks every option first. Each case is written atomically when it
    ends; with ``resume`` the finished cases are kept and the tables come out identical to an
    uninterrupted run; a resume under another nfbench version is refused unless
    ``accept_nfbench_version`` (:func:`~nfbench.runner.provenance.check_versions`). A case that
    raises is recorded as failed (``status``/``error`` in the cases table) and the run goes on.
    ``on_warning`` hears, before any work, what a reader should know: options unlike those of the
    weights' model card, a click-only model under a box step, a resume under other library versions.
    """
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"the number of parallel jobs must be a whole number >= 1, got {jobs}")
    out = Path(out)
    cache = ModelCache(models)
    loaded = {spec.name: cache.get(spec) for spec in plan.models}
    for note in _check_prompts(plan, loaded):
        on_warning(note)
    cases = select_cases(plan.data, plan.test_sets, plan.cases)
    config = plan.config(out.name)
    store = RunStore(out, config, resume=resume)
    done = kept_cases(store, config["versions"], accept_nfbench_version=accept_nfbench_version, on_warning=on_warning)
    tasks, skipped = plan_tasks(plan, cases, store.run_id, done,
                                store.root / "predictions" if save_predictions else None)
    summary = EvaluationSummary(out, n_cases=len(cases), skipped=skipped)
    outcome = Outcome()
    with RunProgress(total=skipped + sum(len(t.scenarios) for t in tasks), quiet=quiet) as progress:
        progress.skip(skipped)
        run_local(tasks, store.root, jobs=jobs, models=cache, progress=progress, outcome=outcome)
    summary.evaluated, summary.failed = outcome.evaluated, outcome.failed
    store.consolidate(csv=csv)
    return summary


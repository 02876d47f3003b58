"""`nfbench demo`: the whole benchmark once, on the built-in phantom, in a few minutes on a CPU."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.dataset import discover_dataset
from nfbench.phantom import PHANTOM_VERSION, write_phantom_dataset
from nfbench.runner.evaluate import EvaluationPlan, EvaluationSummary, evaluate

__all__ = ["DemoResult", "ensure_phantom", "run_demo", "default_demo_dir", "DEMO_SCENARIOS", "DEMO_LESIONS", "DEMO_TEST_SETS", "SLOW", "SHORT_TEST_SET", "SHORT_LESIONS"]

DEMO_SCENARIOS = ("lesion-corrective", "global-corrective")
DEMO_LESIONS = 10
"""Lesions prompted per case in ``lesion-corrective`` (the scenario's default is 20): the high-burden
cases' 10 largest halve the learned models' share of the demo's time."""
DEMO_TEST_SETS = ("imagesTs_1", "imagesTs_2")
SLOW = {
    "dins-phantom": "about 1 s per click on a CPU",
    "litemedsam": "its image encoder takes about 1 s per coronal tile on a CPU",
    "simpleclick-stcn-phantom": "about 0.3 s per click on a CPU; the demo has time for one such model on every case, sw-fastedit-phantom",
}
"""Weight-free models too slow for the whole demo on a CPU, and why: by default they run in a short
second run, on the ``SHORT_LESIONS`` largest lesions of the first case of ``SHORT_TEST_SET`` in
``lesion-corrective``, beside every other model on that same case (so the short table compares
like with like). The whole run keeps one learned model, ``sw-fastedit-phantom`` (the best on the
unseen phantom sets): on two cores it is most of that run's time."""
SHORT_TEST_SET = "imagesTs_2"
SHORT_LESIONS = 2
"""The short run prompts the largest lesions of its case only."""
_RECIPE = "demo-recipe.json"  # written last: a phantom interrupted half-way is made again
_PHANTOM = dict(cases=2, test_cases=2, size="small", burden="mixed", seed=2025)
"""Two high-burden and two low-burden test cases: each case of a learned model costs about 20 s of a
core in the whole run, and the demo's budget is 3 minutes on two cores."""


@dataclass(frozen=True)
class DemoResult:
    data: Path
    run: Path
    summary: EvaluationSummary
    short_run: Path | None = None
    """The short run of the slow models beside the others on one case (None without slow models)."""
    short_summary: EvaluationSummary | None = None


def default_demo_dir() -> Path:
    """Where the demo keeps its phantom and run: ``$NFBENCH_CACHE`` or ``~/.cache/nfbench/demo``."""
    base = os.environ.get("NFBENCH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "nfbench")
    return Path(base) / "demo"


def ensure_phantom(data: Path, *, quiet: bool = False, **recipe: object) -> Path:
    """Make the phantom dataset of ``recipe`` (options of :func:`write_phantom_dataset`) in ``data``
    unless the one there was made from the same recipe by this phantom version; returns ``data``."""
    wanted = {**recipe, "phantom_version": PHANTOM_VERSION}
    written = data / _RECIPE
    if not (written.is_file() and json.loads(written.read_text()) == wanted):
        shutil.rmtree(data, ignore_errors=True)
        write_phantom_dataset(data, progress=not quiet, **recipe)
        written.write_text(json.dumps(wanted))
    return data


def run_demo(
    out: Path, *, models: list[str], loaded: dict, slow: tuple[str, ...] = (), quiet: bool = False, seed: int = 0,
    difficulty: str = "realistic", jobs: int = 1,
) -> DemoResult:
    """Make (or reuse) the demo phantom of ``difficulty`` under ``out/data`` and evaluate ``models`` into
    ``out/run``; ``slow`` models join them on one case in ``lesion-corrective`` only, in ``out/run-short``."""
    data = ensure_phantom(out / "data", quiet=quiet, difficulty=difficulty, **_PHANTOM)
    scenarios = (scenario_from_options(DEMO_SCENARIOS[0], lesions=DEMO_LESIONS), scenario_from_options(DEMO_SCENARIOS[1]))
    plan = EvaluationPlan(data=data, test_sets=DEMO_TEST_SETS, models=tuple(models), scenarios=scenarios, seed=seed)
    run = _fresh(out / "run")
    summary = evaluate(plan, run, models=loaded, quiet=quiet, jobs=jobs)
    if not slow:
        shutil.rmtree(out / "run-short", ignore_errors=True)
        return DemoResult(data, run, summary)
    case = discover_dataset(data).subset(SHORT_TEST_SET)[0].name
    scenario = scenario_from_options(DEMO_SCENARIOS[0], lesions=SHORT_LESIONS)
    short = EvaluationPlan(data=data, test_sets=(SHORT_TEST_SET,), models=(*slow, *models), scenarios=(scenario,),
                           seed=seed, cases=(case,))
    short_run = _fresh(out / "run-short")
    return DemoResult(data, run, summary, short_run, evaluate(short, short_run, models=loaded, quiet=quiet, jobs=jobs))


def _fresh(run: Path) -> Path:
    shutil.rmtree(run, ignore_errors=True)
    return run

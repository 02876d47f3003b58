"""`nfbench demo`: the whole benchmark once, on the built-in phantom, in a few minutes on a CPU."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.phantom import PHANTOM_VERSION, write_phantom_dataset
from nfbench.runner.evaluate import EvaluationPlan, EvaluationSummary, evaluate

__all__ = ["DemoResult", "run_demo", "default_demo_dir", "DEMO_SCENARIOS", "DEMO_TEST_SETS", "LEFT_OUT"]

DEMO_SCENARIOS = ("lesion-corrective", "global-corrective")
DEMO_TEST_SETS = ("imagesTs_1", "imagesTs_2")
LEFT_OUT = {
    "dins-phantom": "about 1 s per click on a CPU: the demo would take over 10 minutes",
    "litemedsam": "about 2 min per small case on one CPU core (its image encoder): the demo would take over 10 minutes",
}
"""Weight-free models the demo leaves out unless asked for with ``--model``, and why."""
_RECIPE = "demo-recipe.json"  # written last: a phantom interrupted half-way is made again
_PHANTOM = dict(cases=2, test_cases=3, size="small", burden="mixed", seed=2025)


@dataclass(frozen=True)
class DemoResult:
    data: Path
    run: Path
    summary: EvaluationSummary


def default_demo_dir() -> Path:
    """Where the demo keeps its phantom and run: ``$NFBENCH_CACHE`` or ``~/.cache/nfbench/demo``."""
    base = os.environ.get("NFBENCH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "nfbench")
    return Path(base) / "demo"


def _recipe(difficulty: str) -> dict:
    return {**_PHANTOM, "difficulty": difficulty, "phantom_version": PHANTOM_VERSION}


def _phantom_is_current(data: Path, difficulty: str) -> bool:
    recipe = data / _RECIPE
    return recipe.is_file() and json.loads(recipe.read_text()) == _recipe(difficulty)


def run_demo(
    out: Path, *, models: list[str], loaded: dict, quiet: bool = False, seed: int = 0,
    difficulty: str = "realistic",
) -> DemoResult:
    """Make (or reuse) the demo phantom of ``difficulty`` under ``out/data`` and evaluate ``models`` into ``out/run``."""
    data = out / "data"
    if not _phantom_is_current(data, difficulty):
        shutil.rmtree(data, ignore_errors=True)
        write_phantom_dataset(data, progress=not quiet, difficulty=difficulty, **_PHANTOM)
        (data / _RECIPE).write_text(json.dumps(_recipe(difficulty)))
    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)
    scenarios = tuple(scenario_from_options(name) for name in DEMO_SCENARIOS)
    plan = EvaluationPlan(data=data, test_sets=DEMO_TEST_SETS, models=tuple(models), scenarios=scenarios, seed=seed)
    summary = evaluate(plan, run, models=loaded, quiet=quiet)
    return DemoResult(data, run, summary)

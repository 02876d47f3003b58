"""One scenario on one case through the engine, keyed as the runner keys it: shared by the tests."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from nfbench.interaction.loop import CaseResult, simulate_case
from nfbench.interaction.scenarios import Scenario
from nfbench.io.volume import Volume
from nfbench.lesions import Lesion, instance_map, lesion_table
from nfbench.phantom import make_case
from nfbench.results.schema import RunKeys


def run_keys(model: str, scenario: Scenario, *, seed: int = 0, case: str = "c") -> RunKeys:
    return RunKeys(run_id="r", model=model, scenario=scenario.name, click_policy=scenario.recorded_policy,
                   budget=scenario.budget, stop_dice=math.nan if scenario.stop_dice is None else scenario.stop_dice,
                   seed=seed, fold=None, test_set="imagesTs", case=case)


def run(model, scenario: Scenario, image: Volume, instances: np.ndarray, lesions: list[Lesion], *, seed: int = 0,
        surface: bool = False, case: str = "c") -> CaseResult:
    """Start ``model`` on the case and simulate ``scenario`` with a generator seeded by ``seed``."""
    session = model.start(image, seed=seed)
    return simulate_case(model, session, image, instances, lesions, scenario,
                         run_keys(model.name, scenario, seed=seed, case=case),
                         rng=np.random.default_rng(seed), surface=surface)


def tiny_case(n_lesions: int, rng: int = 11, **options) -> tuple[Volume, np.ndarray, list[Lesion]]:
    """A tiny low-burden phantom as (image, instance map, lesions)."""
    image, label = make_case(size="tiny", burden="low", rng=rng, n_lesions=n_lesions, **options).volumes(
        image_dtype=np.float32)
    instances = instance_map(label.data)
    return image, instances, lesion_table(instances, affine=image.affine)


def plugin_cli(path: Path, module: str, factory: str, name: str) -> Path:
    """A script that runs the ``nfbench`` CLI with the test model ``module.factory`` registered as
    ``name``: for tests that signal or kill a real CLI process."""
    root = Path(__file__).resolve().parents[1]
    path.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(root / 'src')!r}, {str(root)!r}]
        from {module} import {factory}
        from nfbench.models.registry import register_model
        register_model({name!r}, {factory})
        from nfbench.cli import app
        app(sys.argv[1:], prog_name="nfbench")
    """))
    return path

"""`nfbench evaluate`: run models × scenarios on a dataset into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stderr, stdout

__all__ = ["evaluate_command", "parse_stop_dice"]


def parse_stop_dice(value: str | None) -> float | None | str:
    """`none` disables early stopping; no value keeps each scenario's preset."""
    if value is None:
        return "preset"
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        fail(f"--stop-dice must be a number in (0, 1] or 'none', got {value!r}")


@app.command("evaluate")
def evaluate_command(
    data: Annotated[Path, typer.Option(help="Dataset folder (imagesTr/labelsTr, imagesTs*/labelsTs*).", exists=True, file_okay=False)],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model name (repeat for several); see `nfbench models`.")],
    out: Annotated[Path, typer.Option(help="Run folder to write (its name is the run id).")],
    test_set: Annotated[list[str], typer.Option("--test-set", help="Image folder of a test set (repeatable).")] = ["imagesTs_1"],  # noqa: B006
    scenario: Annotated[list[str], typer.Option("--scenario", "-s", help="lesion-corrective, lesion-single, global-corrective or global-single (repeatable).")] = ["lesion-corrective"],  # noqa: B006
    preset: Annotated[str, typer.Option(help="'default' (centre clicks) or 'paper' (the original's patch clicks).")] = "default",
    lesions: Annotated[int | None, typer.Option(help="Prompt the K largest lesions [preset: 20].")] = None,
    interactions: Annotated[int | None, typer.Option(help="Interactions per lesion in lesion scenarios [preset: 3].")] = None,
    budget: Annotated[int | None, typer.Option(help="Interactions per scan in global-corrective [preset: 60].")] = None,
    stop_dice: Annotated[str | None, typer.Option(help="Stop a session once its Dice reaches this; 'none' never [preset: lesion 1.0, global 0.8].")] = None,
    clicks: Annotated[str | None, typer.Option(help="Click policy: center, center-voxel, uniform, edt-power, patch [preset].")] = None,
    alpha: Annotated[float | None, typer.Option(help="Exponent of the edt-power policy [8].")] = None,
    boxes: Annotated[bool, typer.Option("--boxes", help="Box-capable models get a 2D box on each lesion's largest coronal slice first.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    fold: Annotated[int | None, typer.Option(help="Fold of the model being evaluated (recorded only).")] = None,
    case: Annotated[list[str] | None, typer.Option("--case", help="Evaluate only these cases (repeatable).")] = None,
    surface_metrics: Annotated[bool, typer.Option("--surface-metrics", help="Lesion NSD after every interaction (always at the end).")] = False,
    tolerance_mm: Annotated[float, typer.Option(help="NSD tolerance in mm.")] = 2.0,
    recompute_instances: Annotated[bool, typer.Option("--recompute-instances", help="Split labels into 26-connected components even when they hold instance IDs.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out, keeping finished cases.")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Also write the tables as CSV.")] = False,
    save_predictions: Annotated[bool, typer.Option("--save-predictions", help="Write final predictions as NIfTI in the original orientation.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Simulate a user clicking on lesions and record how each model's mask improves.

    Writes OUT/config.json and the tables clicks, interactions, lesions and cases (Parquet).
    Exits with code 1 when any case failed, after listing them.
    """
    from nfbench.interaction.scenarios import scenario_from_options
    from nfbench.models.registry import load_model
    from nfbench.models.base import ModelError
    from nfbench.results.store import RunError
    from nfbench.runner.evaluate import EvaluationPlan, evaluate
    from nfbench.io.volume import VolumeError

    stop = parse_stop_dice(stop_dice)
    try:
        scenarios = []
        for name in dict.fromkeys(scenario):
            per_lesion = name.startswith("lesion-")
            scenarios.append(scenario_from_options(
                name, preset=preset, lesions=lesions, interactions=interactions if per_lesion else budget,
                stop_dice=stop, click_policy=clicks, alpha=alpha, boxes=boxes))
        from nfbench.interaction.policies import POLICIES
        from nfbench.interaction.scenarios import look_up
        for s in scenarios:
            look_up(s.click_policy, POLICIES, "click policy")
        loaded = {name: load_model(name) for name in dict.fromkeys(model)}
        plan = EvaluationPlan(data=data, test_sets=tuple(dict.fromkeys(test_set)), models=tuple(loaded),
                              scenarios=tuple(scenarios), seed=seed, fold=fold, cases=tuple(case or ()),
                              surface_metrics=surface_metrics, tolerance_mm=tolerance_mm,
                              recompute_instances=recompute_instances)
        summary = evaluate(plan, out, models=loaded, resume=resume, csv=csv, save_predictions=save_predictions, quiet=quiet)
    except (ValueError, KeyError, ModelError, RunError, VolumeError) as err:
        fail(str(err).strip("'\""))
    done = summary.n_cases * len(plan.models) * len(plan.scenarios) - len(summary.failed)
    stdout.print(f"run folder: {summary.run}  ({done} evaluated, {summary.skipped} kept from before, {len(summary.failed)} failed)")
    if summary.failed:
        for key, error in summary.failed:
            stderr.print(f"[red]failed[/] {key}: {error.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)

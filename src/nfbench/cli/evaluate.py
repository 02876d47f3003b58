"""`nfbench evaluate`: run models × scenarios on a dataset into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stderr, stdout, warn

__all__ = ["evaluate_command", "parse_stop_dice", "model_specs"]


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


def _per_model(values: list[str], models: list[str], flag: str) -> dict[str, list[str]]:
    """``VALUE`` (one model) or ``MODEL:VALUE`` (any number of models) → values per model."""
    out: dict[str, list[str]] = {m: [] for m in models}
    for value in values:
        name, sep, rest = value.partition(":")
        if sep and name in out and not (flag == "--weights" and len(name) == 1):  # C:\ paths stay paths
            out[name].append(rest)
        elif len(models) == 1:
            out[models[0]].append(value)
        else:
            fail(f"{flag} {value!r}: with several models, write MODEL:{'PATH' if flag == '--weights' else 'KEY=VALUE'}")
    return out


def model_specs(models: list[str], weights: list[str], options: list[str], device: str) -> list:
    """The ``ModelSpec`` of each ``--model``, from ``--weights``, ``--model-option`` and ``--device``."""
    from nfbench.models.spec import ModelSpec, parse_option

    names = list(dict.fromkeys(models))
    paths = _per_model(weights, names, "--weights")
    extra = _per_model(options, names, "--model-option")
    specs = []
    for name in names:
        if len(paths[name]) > 1:
            fail(f"--weights: model {name!r} got {len(paths[name])} weight paths; give one")
        try:
            parsed = dict(parse_option(o) for o in extra[name])
        except ValueError as err:
            fail(f"--model-option: {err}")
        try:
            specs.append(ModelSpec(name, Path(paths[name][0]) if paths[name] else None, parsed, device))
        except ValueError as err:
            fail(f"--device: {err}")
    return specs


@app.command("evaluate")
def evaluate_command(
    data: Annotated[Path, typer.Option(help="Dataset folder (imagesTr/labelsTr, imagesTs*/labelsTs*).", exists=True, file_okay=False)],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model name (repeat for several); see `nfbench models`.")],
    out: Annotated[Path, typer.Option(help="Run folder to write (its name is the run id).")],
    weights: Annotated[list[str] | None, typer.Option("--weights", help="Weights file or folder of the model (MODEL:PATH with several models).")] = None,
    model_option: Annotated[list[str] | None, typer.Option("--model-option", "-o", help="KEY=VALUE option of the model (MODEL:KEY=VALUE with several; repeatable).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (CUDA when torch sees a GPU).")] = "auto",
    jobs: Annotated[int, typer.Option(help="Cases evaluated in parallel (local processes, each loads its model once).")] = 1,
    test_set: Annotated[list[str], typer.Option("--test-set", help="Image folder of a test set (repeatable).")] = ["imagesTs_1"],  # noqa: B006
    scenario: Annotated[list[str], typer.Option("--scenario", "-s", help="lesion-corrective, lesion-single, global-corrective or global-single (repeatable).")] = ["lesion-corrective"],  # noqa: B006
    preset: Annotated[str, typer.Option(help="'default' (centre clicks), 'paper' (the original's patch clicks) or 'cvpr25' (a box, then 5 center-voxel clicks; the challenge's scores).")] = "default",
    lesions: Annotated[int | None, typer.Option(help="Prompt the K largest lesions [preset: 20].")] = None,
    interactions: Annotated[int | None, typer.Option(help="Interactions per lesion in lesion scenarios [preset: 3].")] = None,
    budget: Annotated[int | None, typer.Option(help="Interactions per scan in global-corrective [preset: 60].")] = None,
    stop_dice: Annotated[str | None, typer.Option(help="Stop a session once its Dice reaches this; 'none' never [preset: lesion 1.0, global 0.8].")] = None,
    clicks: Annotated[str | None, typer.Option(help="Click policy: center, center-voxel, uniform, edt-power, patch [preset].")] = None,
    alpha: Annotated[float | None, typer.Option(help="Exponent of the edt-power policy [8].")] = None,
    boxes: Annotated[bool | None, typer.Option("--boxes/--no-boxes", help="Box-capable models get a 2D box per prompted lesion (on its largest coronal slice) with the first click [preset: cvpr25 yes].")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of every random choice.")] = 0,
    fold: Annotated[int | None, typer.Option(help="Fold of the model being evaluated (recorded only).")] = None,
    case: Annotated[list[str] | None, typer.Option("--case", help="Evaluate only these cases (repeatable).")] = None,
    surface_metrics: Annotated[bool, typer.Option("--surface-metrics", help="Lesion NSD after every interaction (always at the end).")] = False,
    tolerance_mm: Annotated[float, typer.Option(help="NSD tolerance in mm.")] = 2.0,
    recompute_instances: Annotated[bool, typer.Option("--recompute-instances", help="Split labels into 26-connected components even when they hold instance IDs.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out, keeping finished cases.")] = False,
    accept_nfbench_version: Annotated[bool, typer.Option("--accept-nfbench-version", help="Resume a run started by another nfbench version (its results and the new ones mix in the tables).")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Also write the tables as CSV.")] = False,
    save_predictions: Annotated[bool, typer.Option("--save-predictions", help="Write final predictions as NIfTI in the original orientation.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Simulate a user clicking on lesions and record how each model's mask improves.

    Writes OUT/config.json and the tables clicks, interactions, lesions and cases (Parquet).
    Exits with code 1 when any case failed, after listing them.
    """
    from nfbench.interaction.scenarios import scenario_from_options
    from nfbench.models.base import ModelError
    from nfbench.results.store import RunError
    from nfbench.runner.evaluate import EvaluationPlan, evaluate
    from nfbench.io.volume import VolumeError

    stop = parse_stop_dice(stop_dice)
    specs = model_specs(model, weights or [], model_option or [], device)
    try:
        scenarios = []
        for name in dict.fromkeys(scenario):
            # each corrective scenario has its own budget option; a single-click one takes none, so
            # that its config records the interactions it makes, not an option it ignores
            own_budget = {"lesion-corrective": interactions, "global-corrective": budget}.get(name)
            scenarios.append(scenario_from_options(
                name, preset=preset, lesions=lesions, interactions=own_budget,
                stop_dice=stop, click_policy=clicks, alpha=alpha, boxes=boxes))
        names = {s.name for s in scenarios}
        unused = [
            (interactions, "--interactions", "lesion-corrective" in names, "only lesion-corrective takes it (the "
             "single-click scenarios have one click per lesion; global-corrective's is --budget)"),
            (budget, "--budget", "global-corrective" in names,
             "only global-corrective takes it (lesion-corrective's is --interactions)"),
            (alpha, "--alpha", any(s.click_policy == "edt-power" for s in scenarios),
             "only the edt-power click policy (--clicks edt-power) takes it"),
        ]
        for given, option, applies, why in unused:
            if given is not None and not applies:
                warn(f"{option} {given} is ignored: {why}")
        plan = EvaluationPlan(data=data, test_sets=tuple(dict.fromkeys(test_set)), models=tuple(specs),
                              scenarios=tuple(scenarios), seed=seed, fold=fold, cases=tuple(case or ()),
                              surface_metrics=surface_metrics, tolerance_mm=tolerance_mm,
                              recompute_instances=recompute_instances)
        summary = evaluate(plan, out, jobs=jobs, resume=resume, csv=csv, save_predictions=save_predictions, quiet=quiet,
                           accept_nfbench_version=accept_nfbench_version, on_warning=warn)
    except KeyboardInterrupt:
        fail(f"interrupted; the finished cases are kept in {out}: the same command with --resume goes on", code=130)
    except (ValueError, KeyError, ModelError, RunError, VolumeError) as err:
        fail(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))
    done = summary.evaluated - len(summary.failed)
    stdout.print(f"run folder: {summary.run}  ({done} evaluated, {summary.skipped} kept from before, {len(summary.failed)} failed)")
    if summary.failed:
        for key, error in summary.failed:
            stderr.print(f"[red]failed[/] {key}: {error.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)

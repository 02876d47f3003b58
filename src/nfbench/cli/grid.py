"""`nfbench grid`: expand a study file into tasks and run them (local processes or Dask) into one run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stderr, stdout, warn

__all__ = ["grid_command", "study_path"]

_SHIPPED = Path(__file__).resolve().parent.parent / "configs"


def study_path(study: str) -> Path:
    """A study file, or the name of one shipped with nfbench (``demo``, ``paper``)."""
    path = Path(study)
    if path.is_file():
        return path
    shipped = _SHIPPED / f"{study.removesuffix('.yaml')}.yaml"
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    names = ", ".join(sorted(p.stem for p in _SHIPPED.glob("*.yaml")))
    fail(f"no study file {study!r} (nfbench ships: {names}; e.g. `nfbench grid demo`)")


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            fail(f"{flag} {value!r}: write NAME=VALUE")
        pairs[name.strip()] = text.strip()
    return pairs


@app.command("grid")
def grid_command(
    study: Annotated[str, typer.Argument(help="Study file (YAML), or the name of a shipped one: demo, paper.")],
    out: Annotated[Path | None, typer.Option(help="Run folder [the study's `out`]; an existing one is continued.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the tasks, check the models can run them, and exit; nothing is evaluated (a study's phantom is made, to know its cases).")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Keep the tasks with KEY=VALUE[,KEY=VALUE] (keys: model, fold, seed, test_set, case, scenario, click_policy; a key twice: either value).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="NAME=VALUE: replace a var of the study (e.g. weights_root) or its data, out or name.")] = None,
    executor: Annotated[str, typer.Option(help="local (processes on this machine) or dask (a Dask cluster).")] = "local",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes (local), or workers of the local Dask cluster.")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address tcp://HOST:PORT [a local cluster].")] = None,
    accept_nfbench_version: Annotated[bool, typer.Option("--accept-nfbench-version", help="Continue a run folder started by another nfbench version (its results and the new ones mix in the tables).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a whole study: models (weights per fold) × folds × seeds × test sets × scenarios × presets × click policies.

    Each task is one case of one model (one fold's weights) under one seed, evaluated in every protocol
    of the study; the case results go into one run folder that `nfbench report` reads. Running it again
    skips the finished case results. Exits with code 1 when any case result failed, after listing them.
    """
    from nfbench.io.volume import VolumeError
    from nfbench.models.base import ModelError
    from nfbench.results.store import RunError
    from nfbench.runner.grid import StudyError, check_tasks, load_study, parse_only, plan_grid, run_grid

    if scheduler is not None and executor != "dask":
        fail("--scheduler needs --executor dask")
    try:
        loaded = load_study(study_path(study), overrides=_pairs(set_ or [], "--set"))
        chosen = parse_only(only or [])
        if dry_run:
            tasks = plan_grid(loaded, only=chosen, check=False, quiet=quiet)
            _list_tasks(loaded, tasks, out or loaded.out)
            for note in check_tasks(tasks, only=chosen):  # listed first, so missing weights show beside their tasks
                warn(note)
            return
        summary = run_grid(loaded, out, only=chosen, executor=executor, jobs=jobs, scheduler=scheduler, quiet=quiet,
                           accept_nfbench_version=accept_nfbench_version, on_warning=warn)
    except KeyboardInterrupt:
        where = out or "the study's run folder"
        fail(f"interrupted; the finished case results are kept in {where}: the same command goes on", code=130)
    except (StudyError, ModelError, RunError, VolumeError, ValueError, ImportError, OSError) as err:
        fail(str(err))
    done = summary.evaluated - len(summary.failed)
    stdout.print(f"run folder: {summary.run}  ({summary.tasks} tasks, {summary.results} case results: {done} evaluated, "
                 f"{summary.skipped} kept from before, {len(summary.failed)} failed)", highlight=False)
    if summary.failed:
        for key, error in summary.failed:
            stderr.print(f"[red]failed[/] {key}: {error.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)


def _list_tasks(study, tasks, out: Path) -> None:
    """One line per task, then the counts (``--dry-run``)."""
    from nfbench.results.store import finished_keys

    done = finished_keys(out)
    header = ("model", "fold", "seed", "test_set", "case", "done", "weights")
    rows = []
    for task in tasks:
        weights = "" if task.spec.weights is None else str(task.spec.weights)
        if weights and not Path(weights).exists():
            weights += " (missing)"
        finished = sum(task.key(s) in done for s in task.scenarios)
        rows.append((task.spec.name, "-" if task.fold is None else str(task.fold), str(task.seed), task.test_set,
                     task.case, f"{finished}/{len(task.scenarios)}", weights))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    protocols = sorted({s for t in tasks for s in t.scenarios}, key=lambda s: study.protocols.index(s))
    results = sum(len(t.scenarios) for t in tasks)
    finished = sum(t.key(s) in done for t in tasks for s in t.scenarios)
    typer.echo(f"protocols: {'; '.join(_describe(p) for p in protocols)}")
    typer.echo(f"{len(tasks)} tasks, {results} case results ({finished} already in {out}); study {study.path} "
               f"sha256 {study.sha256[:12]}")


def _describe(scenario) -> str:
    stop = "none" if scenario.stop_dice is None else f"{scenario.stop_dice:g}"
    return (f"{scenario.name} ({scenario.recorded_policy} clicks, {scenario.lesions} lesions, budget {scenario.budget}, "
            f"stop {stop}, preset {scenario.preset})")

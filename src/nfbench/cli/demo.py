"""`nfbench demo`: phantom → evaluation → summary → report, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stderr, stdout
from nfbench.cli.phantom import _Difficulty

__all__ = ["demo_command"]


@app.command("demo")
def demo_command(
    out: Annotated[Path | None, typer.Option(help="Folder for the demo's data, run and report [~/.cache/nfbench/demo].")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Models to compare on every case [every available weight-free model; the slow ones on one case].")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulated user.")] = 0,
    difficulty: Annotated[
        _Difficulty, typer.Option("--difficulty", help="Phantom difficulty (see `nfbench data phantom`).")
    ] = _Difficulty.realistic,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Cases evaluated at once, in worker processes (the tables do not depend on it).")] = 2,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Benchmark the available models on the built-in phantom and write a report.

    Makes a small synthetic whole-body MRI dataset (kept between runs), evaluates the models on
    lesion-corrective and global-corrective, prints a summary table and the report's path. The slow
    models (dins-phantom, litemedsam, simpleclick-stcn-phantom) run beside the others on one case, in a second table and report.
    """

    from nfbench.models.base import ModelError
    from nfbench.models.registry import available_models, load_model
    from nfbench.results.report import write_report
    from nfbench.runner.demo import SHORT_TEST_SET, SLOW, default_demo_dir, run_demo

    out = out or default_demo_dir()
    names = model or [m.name for m in available_models() if m.available and not m.needs_weights]
    slow = [] if model else [n for n in names if n in SLOW]
    names = [n for n in names if n not in slow]
    for name in slow:
        stderr.print(f"{name} runs on one case only ({SLOW[name]}); --model {name} runs it on every case", highlight=False)
    if not names:
        fail("no model is available; see `nfbench models`")
    try:
        loaded = {name: load_model(name) for name in [*names, *slow]}
    except (ModelError, ValueError) as err:
        fail(str(err))
    result = run_demo(out, models=names, loaded=loaded, slow=tuple(slow), quiet=quiet, seed=seed,
                      difficulty=difficulty.value, jobs=jobs)
    stdout.print("[bold]lesion Dice after 1 and 3 interactions, scan Dice at stop, mean over cases[/]")
    _print_summary(result.run)
    report = write_report([result.run], out / "report", quiet=quiet)
    stdout.print(f"run folder: {result.run}")
    stdout.print(f"report:     {report}")
    failed = list(result.summary.failed)
    if result.short_run is not None:
        stdout.print(f"\n[bold]{', '.join(slow)} beside the other models on one case of {SHORT_TEST_SET}, lesion-corrective[/]")
        _print_summary(result.short_run)
        report = write_report([result.short_run], out / "report-short", quiet=quiet)
        stdout.print(f"run folder: {result.short_run}")
        stdout.print(f"report:     {report}")
        failed += result.short_summary.failed
    if failed:
        for key, error in failed:
            stderr.print(f"[red]failed[/] {key}: {error.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)


def _print_summary(run: Path) -> None:
    from nfbench.results.aggregate import load_runs, summary_table

    summary = summary_table(load_runs([run]))
    summary["test_set"] = summary["test_set"].str.removeprefix("images")
    short = {"test_set": "set", "cases": "n", "lesion Dice @1": "Dice@1", "lesion Dice @3": "Dice@3",
             "scan Dice at stop": "scan Dice", "interactions used": "used", "latency ms": "ms"}
    typer.echo(summary.rename(columns=short).to_string(index=False, na_rep="", float_format=lambda v: f"{v:.3f}"))

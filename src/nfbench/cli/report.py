"""`nfbench report`: aggregate run folders into tables, statistics, figures and an HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stdout

__all__ = ["report_command"]


@app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `nfbench evaluate` or `nfbench grid`.", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option(help="Folder for report.html, tables/ and figures/.")],
    budget: Annotated[int | None, typer.Option(help="Interaction at which lesion scenarios are summarised and compared [3].")] = None,
    dpi: Annotated[int, typer.Option(help="Resolution of the PNG figures.")] = 150,
    pair_shared_cases: Annotated[bool, typer.Option("--pair-shared-cases", help="Compare models whose case sets differ on the cases both have (by default such pairs are not compared).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Write a self-contained report.html plus tables (CSV, XLSX, Markdown) and figures (PNG, SVG)."""
    from nfbench.results.report import write_report
    from nfbench.results.store import RunError

    if budget is not None and budget < 1:
        fail(f"--budget must be at least 1, got {budget}")
    if not 10 <= dpi <= 1200:
        fail(f"--dpi must be between 10 and 1200, got {dpi}")
    try:
        path = write_report(runs, out, budget=budget, quiet=quiet, dpi=dpi, shared_cases=pair_shared_cases)
    except (RunError, ValueError) as err:
        fail(str(err))
    stdout.print(f"report: {path}")

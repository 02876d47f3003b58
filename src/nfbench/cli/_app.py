"""The Typer applications and the helpers every command shares (errors, quiet progress)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

import nfbench

app = typer.Typer(
    name="nfbench",
    help="Benchmark interactive segmentation models on 3D medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show "[default]" in brackets: markup would swallow them
)
data_app = typer.Typer(help="Prepare and check datasets: phantoms, checks, folds, 2D slices.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(data_app, name="data")

stdout = Console(soft_wrap=True)  # piped output keeps its paths and commands on one line
stderr = Console(stderr=True, soft_wrap=True)  # piped logs keep an error on one line


def print_table(table: Table) -> None:
    """A table on stdout; piped, at its natural width, so that no case or model name is cut at 80 columns."""
    wide = stdout if stdout.is_terminal else Console(file=stdout.file, width=max(stdout.width, 240), soft_wrap=True)
    wide.print(table)


def warn(message: str) -> None:
    """One warning line on stderr: something the user should know, not an error."""
    stderr.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and leave with ``code``; for errors the user can fix."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"nfbench {nfbench.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Benchmark interactive segmentation models on 3D medical images."""

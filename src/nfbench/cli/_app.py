"""The Typer applications and the helpers every command shares (errors, quiet progress)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console

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
stderr = Console(stderr=True)


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

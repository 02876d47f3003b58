"""`nfbench models`: what is registered, and what is missing to use it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nfbench.cli._app import app, print_table

__all__ = ["models_command"]


@app.command("models")
def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every registered model, whether it can run here, and what is missing if not."""
    from rich.table import Table

    from nfbench.models.registry import available_models

    infos = available_models()
    if as_json:
        rows = [{"name": m.name, "target": m.target, "available": m.available, "missing": list(m.missing),
                 "capabilities": sorted(m.capabilities), "needs_weights": m.needs_weights,
                 "description": m.description} for m in infos]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="nfbench models")
    for column in ("model", "available", "weights", "capabilities", "description / missing"):
        table.add_column(column)
    for m in infos:
        status = "[green]yes[/]" if m.available else "[red]no[/]"
        detail = m.description if m.available else "; ".join(m.missing)
        table.add_row(m.name, status, "needed" if m.needs_weights else "none", ", ".join(sorted(m.capabilities)), detail)
    print_table(table)

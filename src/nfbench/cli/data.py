"""`nfbench data check|split|slice`: thin commands over :mod:`nfbench.io`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from nfbench.cli._app import data_app, fail, print_table, stderr, stdout

__all__ = ["check_command", "split_command", "slice_command"]

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@contextmanager
def _progress(description: str, *, quiet: bool) -> Iterator[Callable[[int, int, str], None] | None]:
    """A rich progress bar on stderr fed by the library's ``on_case(done, total, name)`` callback."""
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{description} {name}")

        yield update


def _summary_table(report) -> Table:  # noqa: ANN001  (CheckReport; imported lazily)
    table = Table(title=escape(f"{report.root}: {len(report.cases)} cases"), title_justify="left")
    for column in ("set", "case", "shape RAS", "spacing mm", "stored", "lesions", "ml", "ok"):
        table.add_column(column, justify="right" if column in ("lesions", "ml") else "left",
                         no_wrap=column in ("shape RAS", "spacing mm"))
    for c in report.cases:
        table.add_row(
            escape(c.subset.removeprefix("images")), escape(c.case),
            "×".join(map(str, c.shape)) if c.shape else "?",
            "×".join(f"{s:.3g}" for s in c.spacing) if c.spacing else "?",
            c.orientation or "?",
            "?" if c.n_lesions is None else str(c.n_lesions),
            "?" if c.lesion_volume_ml is None else f"{c.lesion_volume_ml:.2f}",
            "yes" if c.ok else "[red]no[/]",
        )
    return table


@data_app.command("check")
def check_command(
    root: Annotated[Path, typer.Argument(help="Dataset folder (imagesTr/labelsTr, imagesTs*/labelsTs*).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the cases and problems as JSON on stdout.")] = False,
    affine_tolerance: Annotated[float | None, typer.Option(help="Largest allowed distance between the image's and the label's corner voxels, mm. Default: AFFINE_TOLERANCE_MM of nfbench.io.check (0.001).")] = None,
    quiet: Quiet = False,
) -> None:
    """Check a dataset and list every problem, one line per problem naming the file.

    Shows a per-case table (shape and spacing in the canonical RAS grid, stored orientation, lesion count and volume). Exits with code 1 when anything is wrong.
    """
    from nfbench.io.check import AFFINE_TOLERANCE_MM, check_dataset

    tolerance = AFFINE_TOLERANCE_MM if affine_tolerance is None else affine_tolerance
    if not tolerance >= 0:
        fail(f"--affine-tolerance must be a non-negative number of mm, got {tolerance}")
    with _progress("checking", quiet=quiet or as_json) as on_case:
        report = check_dataset(root, affine_tolerance=tolerance, on_case=on_case)
    if as_json:
        stdout.out(json.dumps(report.to_dict(), indent=2), highlight=False)
    else:
        if report.cases:
            print_table(_summary_table(report))
        for line in report.problem_lines():
            stdout.print(f"[red]problem[/] {escape(line)}", highlight=False, soft_wrap=True)
        verdict = "no problems" if report.ok else f"{len(report.problems)} problem(s)"
        stdout.print(f"{len(report.cases)} cases, {verdict}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("split")
def split_command(
    root: Annotated[Path, typer.Argument(help="Dataset folder; folds cover its imagesTr cases.")],
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the shuffle.")] = 42,
    group_regex: Annotated[str | None, typer.Option(help="Patient id pattern searched in case names (group 1, or the whole match); one patient never sits in train and val of a fold. Default: P_(\\d+), the patient id of the original naming {n}_{year}_P_{pid}_T2.")] = None,
    no_group: Annotated[bool, typer.Option("--no-group", help="Split per scan on purpose: scans of one patient may sit in train and val.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace folds already in ROOT/splits.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line.")] = False,
) -> None:
    """Write k-fold splits as ROOT/splits/fold_{k}/{train,val}_set.txt (k from 1), grouped by patient."""
    from nfbench.io.splits import PATIENT_PATTERN, FoldsExistError, GroupPatternError, SplitError, split_dataset

    if no_group and group_regex is not None:
        fail("--group-regex and --no-group exclude each other: group by a pattern, or split per scan")
    pattern = None if no_group else (PATIENT_PATTERN if group_regex is None else group_regex)
    try:
        result = split_dataset(root, folds=folds, seed=seed, group_pattern=pattern, overwrite=overwrite)
    except GroupPatternError as err:
        fail(escape(f"{err.problem}; pass --group-regex with a pattern that finds the patient in every name, "
                    "or --no-group to split per scan on purpose"))
    except FoldsExistError as err:
        fail(escape(f"{err.folder} already holds folds; pass --overwrite to replace them"))
    except SplitError as err:
        fail(escape(str(err)))
    if not quiet:
        sizes = ", ".join(f"fold_{f.index} {len(f.train)}/{len(f.val)}" for f in result)
        unit = "per scan" if pattern is None else f"grouped by {pattern}"
        stdout.print(escape(f"wrote {root / 'splits'} ({unit}; train/val: {sizes})"), highlight=False)


@data_app.command("slice")
def slice_command(
    root: Annotated[Path, typer.Argument(help="Dataset folder (imagesTr/labelsTr, imagesTs*/labelsTs*).")],
    out: Annotated[Path, typer.Argument(help="Output folder for the PNG slices and slices.json.")],
    subset: Annotated[list[str] | None, typer.Option("--subset", help="Only this image folder, e.g. imagesTr or Ts_1 (repeatable).")] = None,
    axis: Annotated[int | None, typer.Option(help="Canonical RAS axis to slice along [the one with the largest spacing].")] = None,
    quiet: Quiet = False,
) -> None:
    """Write 2D PNG slices along the thick-slice axis for 2D models (orientation in OUT/slices.json).

    Images become 8-bit (0.5-99.5 percentile of non-zero voxels), masks hold lesions ranked by size (largest = 1). Coronal frames: head up, patient's right on the image's left, frame 0 most posterior.
    """
    from nfbench.io.slices import SliceError, slice_dataset
    from nfbench.io.volume import VolumeError

    try:
        with _progress("slicing", quiet=quiet) as on_case:
            cases = slice_dataset(root, out, subsets=subset, axis=axis, on_case=on_case)
    except (SliceError, VolumeError) as err:
        fail(escape(str(err)))
    if not quiet:
        frames = sum(c.n_frames for c in cases)
        stdout.print(f"wrote {frames} frames of {len(cases)} cases to {out}", highlight=False)

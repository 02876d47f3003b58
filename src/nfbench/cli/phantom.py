"""`nfbench data phantom OUT`: write a synthetic whole-body MRI dataset (thin wrapper)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import data_app, fail, stdout

__all__ = ["phantom"]


class _Size(str, Enum):
    tiny = "tiny"
    small = "small"
    full = "full"


class _Difficulty(str, Enum):
    easy = "easy"
    realistic = "realistic"
    hard = "hard"


class _Burden(str, Enum):
    low = "low"
    high = "high"
    mixed = "mixed"


@data_app.command("phantom")
def phantom(
    out: Annotated[
        Path,
        typer.Argument(
            file_okay=False,
            help="Dataset folder to write (imagesTr, labelsTr, imagesTs_1/2, labelsTs_1/2, dataset.json).",
        ),
    ],
    cases: Annotated[int, typer.Option("--cases", min=0, help="Training cases (imagesTr).")] = 4,
    test_cases: Annotated[
        int, typer.Option("--test-cases", min=0, help="Cases in each test set: Ts_1 high burden, Ts_2 low.")
    ] = 2,
    size: Annotated[
        _Size,
        typer.Option(
            "--size",
            help="small: 2.5 × 7.8 × 2.5 mm, 200 × 31 × 725 (default); full: 0.625 × 7.8 × 0.625 mm, "
            "800 × 31 × 2900 like the original scans; tiny: 7.5 × 15.6 × 7.5 mm, for tests.",
        ),
    ] = _Size.small,
    burden: Annotated[
        _Burden,
        typer.Option("--burden", help="Training burden: low 3–15 lesions, high 100–400, mixed drawn per case."),
    ] = _Burden.low,
    difficulty: Annotated[
        _Difficulty,
        typer.Option(
            "--difficulty",
            help="realistic: partial volume, blur, texture, bright mimics, clinical noise (default); "
            "easy: flat high-contrast data (earlier versions, smoke tests); hard: lower contrast, more noise.",
        ),
    ] = _Difficulty.realistic,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the whole dataset.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the NIfTI files of an earlier phantom in OUT.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")] = False,
) -> None:
    """Write a synthetic coronal T2 fat-suppressed whole-body MRI dataset with neurofibromas."""
    from nfbench.phantom import write_phantom_dataset

    try:
        root = write_phantom_dataset(
            out, cases=cases, test_cases=test_cases, size=size.value, burden=burden.value, seed=seed,
            progress=not quiet, overwrite=overwrite, difficulty=difficulty.value,
        )
    except (FileExistsError, ValueError, OSError) as err:
        fail(str(err))
    if not quiet:
        stdout.print(
            f"wrote {cases} training cases and {test_cases} high-burden (Ts_1) + {test_cases} low-burden "
            f"(Ts_2) test cases to {root}",
            highlight=False,
        )

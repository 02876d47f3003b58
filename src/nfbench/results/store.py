"""The run folder: configuration, per-case parts written atomically, and the consolidated tables.

Layout (DESIGN §4)::

    RUN/config.json                     resolved configuration, versions, seed
    RUN/parts/<key>/<table>.parquet    one folder per finished case, a file per table
    RUN/previews/<key>.npz              coronal projections for overlays
    RUN/predictions/<model>/<scenario>/<test_set>/<case>.nii.gz   with --save-predictions
    RUN/{clicks,interactions,lesions,cases,provenance}.parquet    all parts, consolidated

A part appears under its final name only once all its files are written (write to a temporary
folder, then rename), so an interrupted run never leaves half a case behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from nfbench.results.schema import ROW_TYPES, TABLES, row_values, with_added_columns

__all__ = ["RunStore", "RunError", "case_key", "finished_keys", "output_folder_problem", "row_key", "write_part",
           "read_run_table", "load_config"]

_IGNORED_FOR_RESUME = ("created", "versions", "run_id", "study_file", "study_sha256")
# Lists whose order decides no number (results are keyed and sorted): a resume may give them in another order.
_UNORDERED_FOR_RESUME = ("test_sets", "models", "model_specs", "scenarios", "cases")


class RunError(ValueError):
    """A run folder that cannot be used (missing, or resumed with another configuration)."""


def case_key(model: str, scenario: str, test_set: str, case: str, variant: str = "") -> str:
    """The name of one evaluated case inside a run (file-name safe).

    A run of `nfbench evaluate` has one fold, seed and protocol per scenario, so model, scenario,
    test set and case name a result; a study of `nfbench grid` varies the others too, which
    ``variant`` (:func:`row_key`) adds.
    """
    parts = (model, scenario, test_set, case, *((variant,) if variant else ()))
    return "__".join(part.replace("/", "_") for part in parts)


def row_key(row: object, *, variant: bool) -> str:
    """The key of the case result a table row belongs to (``variant``: a grid's run store, whose keys
    also hold the click policy, budget, early-stop target, fold and seed)."""
    extra = ""
    if variant:
        stop = "none" if pd.isna(row.stop_dice) else f"{float(row.stop_dice):g}"
        fold = "none" if row.fold is None or pd.isna(row.fold) else str(int(row.fold))
        extra = f"{row.click_policy}-b{int(row.budget)}-stop{stop}-fold{fold}-seed{int(row.seed)}"
    return case_key(row.model, row.scenario, row.test_set, row.case, extra)


def load_config(run: Path) -> dict:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise RunError(f"{run}: not a run folder (no config.json); make one with `nfbench evaluate`")
    return json.loads(path.read_text())


def _frame(name: str, rows: list) -> pd.DataFrame:
    """One table from typed rows; a row of another type (another set of columns) is refused."""
    kind = ROW_TYPES[name]
    wrong = next((r for r in rows if type(r) is not kind), None)
    if wrong is not None:
        raise TypeError(f"table {name!r} takes {kind.__name__} rows, got {type(wrong).__name__}")
    return pd.DataFrame([row_values(r) for r in rows], columns=list(TABLES[name]))


def output_folder_problem(folder: Path, marker: str, what: str) -> str | None:
    """Why ``folder`` cannot hold a new or continued ``what`` (recognised by its ``marker`` file):
    it is a file, or it holds other files and no ``marker``; None when it can."""
    if folder.exists() and not folder.is_dir():
        return f"{folder}: exists and is not a folder; choose another {what} folder"
    if folder.is_dir() and not (folder / marker).exists() and any(folder.iterdir()):
        return f"{folder}: folder holds other files and no {what}; choose an empty or new folder"
    return None


class RunStore:
    """Writes one run folder; ``resume=True`` reopens it and keeps the finished cases."""

    def __init__(self, root: str | Path, config: dict, *, resume: bool = False) -> None:
        self.root = Path(root)
        self.parts = self.root / "parts"
        existing = self.root / "config.json"
        problem = output_folder_problem(self.root, "config.json", "nfbench run")
        if problem:
            raise RunError(problem)
        if existing.exists():
            if not resume:
                raise RunError(f"{self.root}: run folder already exists; resume it (--resume) or choose another run folder")
            old = json.loads(existing.read_text())
            differ = sorted(k for k in set(old) | set(config)
                            if k not in _IGNORED_FOR_RESUME and _resume_value(k, old.get(k)) != _resume_value(k, config.get(k)))
            if differ:
                raise RunError(f"{self.root}: cannot resume, the configuration differs in {', '.join(differ)}")
            self.config = old
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.config = config
            _atomic_write_text(existing, json.dumps(config, indent=2, default=str))
        self.parts.mkdir(exist_ok=True)
        for stale in self.parts.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    @property
    def run_id(self) -> str:
        return str(self.config["run_id"])

    def finished(self) -> set[str]:
        """Keys of the cases whose part is complete and did not fail."""
        return finished_keys(self.root)

    def write_case(self, key: str, tables: dict[str, list], preview: dict[str, np.ndarray] | None = None) -> None:
        """Write the typed rows of one case atomically (replacing an earlier, failed attempt)."""
        write_part(self.root, key, tables, preview)

    def consolidate(self, *, csv: bool = False) -> dict[str, pd.DataFrame]:
        """Join all parts into one table per level, sorted so that resumed and uninterrupted runs agree."""
        parts = sorted(p for p in self.parts.iterdir() if not p.name.startswith(".tmp-"))
        frames = {}
        for name, columns in TABLES.items():
            # a part written before a table existed (provenance) lacks its file
            pieces = [with_added_columns(name, pd.read_parquet(f)) for p in parts if (f := p / f"{name}.parquet").exists()]
            pieces = [p for p in pieces if len(p)]
            frame = pd.concat(pieces, ignore_index=True) if pieces else _frame(name, [])
            frame.to_parquet(self.root / f"{name}.parquet", index=False)
            if csv:
                frame.to_csv(self.root / f"{name}.csv", index=False)
            frames[name] = frame
        return frames


def _resume_value(key: str, value: object) -> object:
    """A configuration entry as a resume compares it (the lists of ``_UNORDERED_FOR_RESUME`` in any order)."""
    if key in _UNORDERED_FOR_RESUME and isinstance(value, list):
        return sorted(json.dumps(v, sort_keys=True, default=str) for v in value)
    return value


def finished_keys(root: str | Path) -> set[str]:
    """Keys of the cases of the run folder ``root`` whose part is complete and did not fail (none
    when there is no run folder yet); reads, never writes."""
    parts = Path(root) / "parts"
    done = set()
    for part in parts.iterdir() if parts.is_dir() else ():
        if part.name.startswith(".tmp-") or not (part / "cases.parquet").exists():
            continue
        status = pd.read_parquet(part / "cases.parquet", columns=["status"])["status"]
        if (status == "ok").all():
            done.add(part.name)
    return done


def write_part(root: str | Path, key: str, tables: dict[str, list], preview: dict[str, np.ndarray] | None = None) -> None:
    """Write one case's rows into the run folder ``root`` atomically, from any process.

    What :meth:`RunStore.write_case` does, without opening the store: a worker of a cluster writes
    its cases into a shared run folder this way. Parts of different keys never touch the same file.
    """
    root = Path(root)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown result tables {unknown}; the tables are {', '.join(TABLES)}")
    frames = {name: _frame(name, tables.get(name, [])) for name in TABLES}
    parts = root / "parts"
    tmp = parts / f".tmp-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, frame in frames.items():
        frame.to_parquet(tmp / f"{name}.parquet", index=False)
    if preview is not None:
        (root / "previews").mkdir(exist_ok=True)
        target = root / "previews" / f"{key}.npz"
        np.savez_compressed(target.with_suffix(".tmp.npz"), **preview)
        os.replace(target.with_suffix(".tmp.npz"), target)
    final = parts / key
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_run_table(run: str | Path, name: str) -> pd.DataFrame:
    """One consolidated table of a run folder (``clicks``, ``interactions``, ``lesions`` or ``cases``)."""
    load_config(Path(run))
    path = Path(run) / f"{name}.parquet"
    if not path.is_file():
        raise RunError(f"{run}: {path.name} is missing; the run did not finish (resume it to complete it)")
    return with_added_columns(name, pd.read_parquet(path))  # an older run's table lacks the columns added since

"""Cross-validation folds over the training cases, grouped by patient.

The original split scans, not patients: with longitudinal follow-ups (the same ``P_{pid}`` scanned
in several years) a patient could sit in training and validation of one fold. Here scans are
grouped by patient by default (the original naming ``{n}_{year}_P_{pid}_T2``), another naming
needs its own pattern, and a per-scan split has to be asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfbench.io.dataset import discover_dataset

__all__ = ["Fold", "SplitError", "GroupPatternError", "FoldsExistError", "PATIENT_PATTERN", "case_groups",
           "kfold_split", "write_splits", "split_dataset", "read_fold"]

PATIENT_PATTERN = r"P_(\d+)"
"""The default group pattern: the patient id of the original naming ``{n}_{year}_P_{pid}_T2``."""


class SplitError(ValueError):
    """Folds cannot be made as asked (too few cases or groups, a pattern that does not match)."""


class GroupPatternError(SplitError):
    """A group pattern finds no patient id in some case names (listed in ``names``)."""

    def __init__(self, pattern: str, names: list[str]) -> None:
        self.pattern = pattern
        self.names = names
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        default = " (the default: the original naming {n}_{year}_P_{pid}_T2)" if pattern == PATIENT_PATTERN else ""
        self.problem = f"group pattern {pattern!r}{default} does not match case name(s): {shown}"
        super().__init__(f"{self.problem}; pass a grouping pattern that finds the patient in every name, "
                         "or split per scan explicitly")


class FoldsExistError(SplitError):
    """The splits folder already holds folds and replacing them was not asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(f"{folder} already holds folds; they are replaced only when overwriting is asked for")


@dataclass(frozen=True)
class Fold:
    """One fold: sorted case names for training and validation. ``index`` counts from 1."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]


def case_groups(names: list[str], pattern: str | None) -> dict[str, str]:
    """The patient group of each case name.

    With ``pattern`` None every case is its own group. Otherwise the pattern is searched in the
    name (``re.search``) and the group is its first capturing group, or the whole match when the
    pattern has none; e.g. ``P_(\\d+)`` maps ``10_2018_P_72_T2`` to ``72``. A name the pattern
    does not match raises :class:`GroupPatternError`.
    """
    if pattern is None:
        return {name: name for name in names}
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise SplitError(f"group pattern {pattern!r} is not a valid regular expression: {err}") from err
    groups: dict[str, str] = {}
    unmatched = []
    for name in names:
        match = regex.search(name)
        if match is None:
            unmatched.append(name)
            continue
        groups[name] = match.group(1) if regex.groups else match.group(0)
    if unmatched:
        raise GroupPatternError(pattern, unmatched)
    return groups


def kfold_split(
    names: list[str], *, folds: int = 5, seed: int = 42, group_pattern: str | None = PATIENT_PATTERN
) -> list[Fold]:
    """Split case names into ``folds`` folds, never putting one group in train and val of a fold.

    ``group_pattern`` finds the patient in each name (see :func:`case_groups`; default
    :data:`PATIENT_PATTERN`); ``None`` splits per scan, each case its own group.

    Groups are put in a random order (``numpy.random.default_rng(seed)``), then, largest group
    first (ties in that random order), each goes to the validation fold holding the fewest cases
    so far (ties: the lowest fold index). Without groups this deals the shuffled cases round-robin,
    so fold sizes differ by at most one. Every case is in exactly one validation fold. The result
    depends only on the sorted names, ``folds``, ``seed`` and NumPy's random stream (stable for a
    given NumPy build).
    """
    if folds < 2:
        raise SplitError(f"need at least 2 folds, got {folds}")
    names = sorted(set(names))
    groups = case_groups(names, group_pattern)
    members: dict[str, list[str]] = {}
    for name in names:
        members.setdefault(groups[name], []).append(name)
    unit = "cases" if group_pattern is None else "patient groups"
    if len(members) < folds:
        raise SplitError(f"{len(members)} {unit} cannot fill {folds} folds (need at least one per fold)")
    keys = sorted(members)
    rng = np.random.default_rng(seed)
    shuffled = [keys[i] for i in rng.permutation(len(keys))]
    order = sorted(range(len(shuffled)), key=lambda i: (-len(members[shuffled[i]]), i))
    val: list[list[str]] = [[] for _ in range(folds)]
    for i in order:
        target = min(range(folds), key=lambda f: (len(val[f]), f))
        val[target] += members[shuffled[i]]
    result = []
    for k in range(folds):
        held_out = set(val[k])
        result.append(Fold(k + 1, tuple(n for n in names if n not in held_out), tuple(sorted(held_out))))
    return result


def write_splits(folder: str | Path, folds: list[Fold], *, metadata: dict | None = None) -> list[Path]:
    """Write ``folder/fold_{k}/{train,val}_set.txt`` (one case per line, trailing newline).

    ``metadata`` (seed, pattern, ...) goes to ``folder/splits.json`` with the fold membership.
    Returns the written text files.
    """
    folder = Path(folder)
    written = []
    for fold in folds:
        sub = folder / f"fold_{fold.index}"
        sub.mkdir(parents=True, exist_ok=True)
        for kind, names in (("train", fold.train), ("val", fold.val)):
            path = sub / f"{kind}_set.txt"
            path.write_text("".join(f"{n}\n" for n in names))
            written.append(path)
    info = dict(metadata or {})
    info["folds"] = [{"fold": f.index, "train": list(f.train), "val": list(f.val)} for f in folds]
    (folder / "splits.json").write_text(json.dumps(info, indent=2) + "\n")
    return written


def split_dataset(
    root: str | Path,
    *,
    folds: int = 5,
    seed: int = 42,
    group_pattern: str | None = PATIENT_PATTERN,
    overwrite: bool = False,
) -> list[Fold]:
    """Make k folds over a dataset's ``imagesTr`` cases and write them under ``root/splits``.

    Cases are grouped by patient with ``group_pattern`` (``None``: per scan), as in
    :func:`kfold_split`. Raises :class:`SplitError` when ``imagesTr`` holds no case, an image
    without label, or the folds cannot be filled, :class:`GroupPatternError` when the pattern misses a case name, and
    :class:`FoldsExistError` when ``root/splits`` already holds folds and ``overwrite`` is not set
    (with it, stale ``fold_k`` folders beyond ``folds`` are removed).
    """
    root = Path(root)
    dataset = discover_dataset(root)
    cases = dataset.subsets.get("imagesTr", [])
    if not cases:
        raise SplitError(f"{root / 'imagesTr'}: no training images found")
    unlabelled = [c.image.name for c in cases if c.label is None]
    if unlabelled:  # a fold would train or validate on a case that has no truth
        raise SplitError(f"{root / 'imagesTr'}: {len(unlabelled)} image(s) without label: "
                         f"{', '.join(unlabelled[:5])}{', ...' if len(unlabelled) > 5 else ''}; add their labels to "
                         "labelsTr or move them out before making folds")
    out = root / "splits"
    existing = sorted(out.glob("fold_*/*_set.txt")) if out.is_dir() else []
    if existing and not overwrite:
        raise FoldsExistError(out)
    names = [c.name for c in cases]
    result = kfold_split(names, folds=folds, seed=seed, group_pattern=group_pattern)
    for path in existing:
        if path.parent.name not in {f"fold_{f.index}" for f in result} and path.name in {"train_set.txt", "val_set.txt"}:
            path.unlink()
            if not any(path.parent.iterdir()):
                path.parent.rmdir()
    metadata = {"folds_k": folds, "seed": seed, "group_pattern": group_pattern, "numpy": np.__version__,
                "groups": None if group_pattern is None else case_groups(names, group_pattern)}
    write_splits(out, result, metadata=metadata)
    return result


def read_fold(root: str | Path, fold: int) -> Fold:
    """Fold ``fold`` (from 1) of a dataset, as ``nfbench data split`` wrote it under ``root/splits``.

    Raises :class:`SplitError` naming the file when the fold is missing, a list is empty, or a case
    sits in both lists (a training run would then validate on what it trained on).
    """
    folder = Path(root) / "splits" / f"fold_{fold}"
    lists = {}
    for kind in ("train", "val"):
        path = folder / f"{kind}_set.txt"
        if not path.is_file():
            raise SplitError(f"{path}: no such fold file; make the folds with `nfbench data split {root}`")
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if not names:
            raise SplitError(f"{path}: lists no case")
        lists[kind] = names
    both = sorted(set(lists["train"]) & set(lists["val"]))
    if both:
        raise SplitError(f"{folder}: case(s) in both train and val: {', '.join(both[:5])}")
    return Fold(fold, lists["train"], lists["val"])

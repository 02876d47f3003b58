"""Write a whole phantom dataset folder in the DESIGN §1 layout.

``imagesTr``/``labelsTr`` hold the training cases (burden as asked), ``imagesTs_1``/``labelsTs_1``
a high-burden test set and ``imagesTs_2``/``labelsTs_2`` a low-burden one. Case names follow the
original ``{n}_{year}_P_{pid}_T2``; about a third of the training patients have two scans (different
years), so patient-grouped folds have something to group. Test patients never appear in training.
Images are ``<case>.nii.gz`` (int16), labels ``<case>.nii.gz`` (uint16 instance maps), both stored
with axes (R, S, A) as the original coronal scans were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import nfbench
from nfbench.io.volume import save_volume
from nfbench.phantom.case import BURDEN_RANGES, BURDENS, SIZES, STORED_ORIENTATION, make_case
from nfbench.phantom.difficulty import difficulty_for

__all__ = ["PhantomEntry", "plan_dataset", "write_phantom_dataset", "PHANTOM_VERSION", "SUBSETS"]

PHANTOM_VERSION = 2
"""Bumped whenever the same seed would give different arrays."""
SUBSETS = {"Tr": None, "Ts_1": "high", "Ts_2": "low"}
"""Subset suffix → fixed burden (None: the burden asked for)."""


@dataclass(frozen=True)
class PhantomEntry:
    """One case to write: subset suffix (``Tr``, ``Ts_1``, ``Ts_2``), case name, patient id, burden."""

    subset: str
    name: str
    patient: int
    burden: str


def plan_dataset(
    *, cases: int, test_cases: int, burden: str, rng: np.random.Generator
) -> list[PhantomEntry]:
    """Case names, patients and burdens of a dataset, in writing order."""
    if burden not in BURDENS:
        raise ValueError(f"unknown burden {burden!r}; choose one of {', '.join(BURDENS)}")
    total = cases + 2 * test_cases
    # Distinct ids; never more patients than scans.
    pids = rng.choice(np.arange(1, max(1000, 2 * total)), size=total, replace=False)
    entries: list[PhantomEntry] = []
    next_pid = 0
    n = 1

    def add(subset: str, n_scans: int, case_burden: str) -> None:
        nonlocal next_pid, n
        pid = int(pids[next_pid])
        next_pid += 1
        for year in np.sort(rng.choice(np.arange(2010, 2024), size=n_scans, replace=False)):
            entries.append(PhantomEntry(subset, f"{n}_{int(year)}_P_{pid}_T2", pid, case_burden))
            n += 1

    left = cases
    while left > 0:
        # Follow-up scans of one patient; the first patient always has two when there are >= 3 cases.
        first = left == cases and cases >= 3
        n_scans = 2 if left >= 2 and (first or rng.random() < 0.35) else 1
        add("Tr", n_scans, burden)
        left -= n_scans
    for subset in ("Ts_1", "Ts_2"):
        for _ in range(test_cases):
            add(subset, 1, SUBSETS[subset])  # type: ignore[arg-type]
    return entries


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled, transient=False,
    )


def write_phantom_dataset(
    out: str | Path,
    *,
    cases: int = 4,
    test_cases: int = 2,
    size: str = "small",
    burden: str = "low",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    difficulty: str = "realistic",
) -> Path:
    """Write a synthetic dataset folder and its ``dataset.json``; return the folder.

    Parameters
    ----------
    out : str or Path
        Dataset folder (created). Refused when it already holds phantom folders with files, unless
        ``overwrite``: stale cases from an earlier, larger run would otherwise mix in.
    cases : int
        Training cases (``imagesTr``/``labelsTr``), with burden ``burden``.
    test_cases : int
        Cases in each test set: ``imagesTs_1`` (high burden) and ``imagesTs_2`` (low burden).
    size : {"small", "tiny", "full"}
        See :func:`~nfbench.phantom.make_case`.
    burden : {"low", "high", "mixed"}
        Burden of the training cases (``mixed``: drawn per case).
    seed : int
        Every case gets its own generator spawned from this seed, so a case does not depend on how
        many cases come before it.
    progress : bool
        Show a progress bar on stderr.
    overwrite : bool
        Replace the NIfTI files of an earlier phantom in ``out``.
    difficulty : {"realistic", "easy", "hard"}
        See :func:`~nfbench.phantom.make_case`; ``easy`` gives the flat, high-contrast phantom of
        earlier versions.

    Returns
    -------
    Path
        The dataset folder.
    """
    if size not in SIZES:
        raise ValueError(f"unknown phantom size {size!r}; choose one of {', '.join(SIZES)}")
    level = difficulty_for(difficulty)
    if cases < 0 or test_cases < 0:
        raise ValueError(f"case counts must be >= 0, got cases={cases}, test_cases={test_cases}")
    if cases + test_cases == 0:
        raise ValueError("a phantom dataset needs at least one case (cases or test_cases > 0)")
    out = Path(out)
    folders = [out / f"{kind}{subset}" for subset in SUBSETS for kind in ("images", "labels")]
    busy = [f for f in folders if f.is_dir() and any(f.iterdir())]
    if busy and not overwrite:
        raise FileExistsError(f"{busy[0]}: already holds files; choose an empty folder or overwrite")
    plan_seq, *case_seqs = np.random.SeedSequence(seed).spawn(1 + cases + 2 * test_cases)
    entries = plan_dataset(
        cases=cases, test_cases=test_cases, burden=burden, rng=np.random.default_rng(plan_seq)
    )
    used = {entry.subset for entry in entries}  # an empty subset folder would fail `nfbench data check`
    for folder in [out / f"{kind}{subset}" for subset in SUBSETS if subset in used for kind in ("images", "labels")]:
        folder.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for f in folder.glob("*.nii*"):
                f.unlink()
    records: dict[str, list[dict[str, object]]] = {s: [] for s in SUBSETS}
    with _progress(progress) as bar:
        task = bar.add_task(f"phantom ({size})", total=len(entries))
        for entry, seq in zip(entries, case_seqs):
            bar.update(task, description=f"{entry.name}")
            case = make_case(
                size=size, burden=entry.burden, rng=np.random.default_rng(seq), difficulty=level
            )
            image, label = case.volumes()
            save_volume(image, out / f"images{entry.subset}" / f"{entry.name}.nii.gz")
            save_volume(label, out / f"labels{entry.subset}" / f"{entry.name}.nii.gz")
            records[entry.subset].append(
                {
                    "case": entry.name, "patient": entry.patient, "burden": entry.burden,
                    "n_lesions": case.n_lesions,
                    "kinds": {k: case.kinds.count(k) for k in sorted(set(case.kinds))},
                }
            )
            bar.advance(task)
    shape, spacing = SIZES[size]
    meta = {
        "name": "nfbench synthetic whole-body MRI phantom",
        "description": "coronal T2 fat-suppressed-like whole-body MRI with neurofibromas (instance labels)",
        "phantom_version": PHANTOM_VERSION,
        "nfbench_version": nfbench.__version__,
        "numpy_version": np.__version__,
        "seed": seed,
        "size": size,
        "burden": burden,
        "burden_ranges": {k: list(v) for k, v in BURDEN_RANGES.items()},
        "shape_ras": list(shape),
        "spacing_ras_mm": list(spacing),
        "stored_orientation": "".join(STORED_ORIENTATION),
        "image_dtype": "int16",
        "label_dtype": "uint16",
        "difficulty": level.name,
        "noise_sigma": level.noise_sigma,
        "labels": {"0": "background", "1..N": "lesion instances"},
        "case_name_pattern": r"^(?P<n>\d+)_(?P<year>\d{4})_P_(?P<pid>\d+)_T2$",
        "subsets": {
            f"images{s}": {"burden": SUBSETS[s] or burden, "cases": records[s]} for s in SUBSETS
        },
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out

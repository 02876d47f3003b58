"""Provenance of a case result: which code, libraries, weights, machine and seeds produced it.

Computed in the process that evaluates the case (a cluster's worker reports its own host, device
and libraries) and written beside the case's rows as the ``provenance`` table. What is costly is
computed once per process: the versions, the git commit, and each weights file's SHA-256 (cached
by path, size and modification time, so a weights file replaced between tasks is hashed again).
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pandas as pd

import nfbench
from nfbench.interaction.scenarios import Scenario
from nfbench.models.spec import ModelSpec, file_identity
from nfbench.results.schema import ProvenanceRow, RunKeys
from nfbench.results.store import RunError, RunStore

__all__ = ["case_provenance", "changed_data", "check_data_unchanged", "check_versions", "data_file_stamp", "git_commit",
           "kept_cases", "package_version", "task_config", "weights_sha256"]

NOT_INSTALLED = "not installed"


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return NOT_INSTALLED


@functools.cache
def git_commit() -> str:
    """The commit of the git checkout nfbench is imported from, ``+dirty`` when it has changes;
    "" for an installed wheel (no checkout around the package) or without git."""
    package = Path(nfbench.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10,
                              check=True)
        return done.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top not in package.parents:
            return ""
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(package))
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if dirty else "")


@functools.cache
def _software() -> dict[str, str]:
    return {
        "nfbench_version": nfbench.__version__,
        "nfbench_commit": git_commit(),
        "python_version": sys.version.split()[0],
        "numpy_version": package_version("numpy"),
        "torch_version": package_version("torch"),
        "monai_version": package_version("monai"),
    }


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return str(file_identity(Path(path))["sha256"])


def weights_sha256(weights: Path | None) -> str:
    """SHA-256 of a weights file (of a folder's files, see :func:`file_identity`); "" without one."""
    if weights is None:
        return ""
    path = Path(weights).resolve()
    if not path.exists():
        return ""
    stat = path.stat()
    if path.is_dir():  # a folder changes when a file inside it does: stamp with the newest file
        stamps = [p.stat() for p in path.rglob("*") if p.is_file()]
        return _sha256(str(path), sum(s.st_size for s in stamps), max((s.st_mtime_ns for s in stamps), default=0))
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def _model_package(model: object | None) -> tuple[str, str]:
    """The distribution behind a model: its class's ``package`` attribute (a wrapper names the package
    it wraps, e.g. ``sam2``), else the distribution of the module that defines it."""
    if model is None:
        return "", ""
    return _package_of(type(model).__module__.split(".")[0], getattr(type(model), "package", None))


@functools.cache
def _package_of(module: str, named: str | None) -> tuple[str, str]:
    # packages_distributions() reads every installed distribution's file list: seconds, so once
    distribution = str(named) if named else next(iter(packages_distributions().get(module, [])), module)
    return distribution, package_version(distribution)


def _device(spec: ModelSpec, model: object | None) -> str:
    """Where the model runs: its ``device`` attribute; a model without one runs on the CPU (the
    registry gives a device only to models that take one); the spec's request when none loaded."""
    if model is None:
        return spec.device
    return _device_name(str(getattr(model, "device", None) or "cpu"))


@functools.cache
def _device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device).index or 0)})"


def task_config(task: object, scenario: Scenario) -> dict:
    """The resolved configuration of one case result: everything that decides its numbers."""
    spec: ModelSpec = task.spec
    return {
        "model": {"name": spec.name, "weights": None if spec.weights is None else str(Path(spec.weights).resolve()),
                  "options": {k: spec.options[k] for k in sorted(spec.options)}, "device": spec.device},
        "scenario": scenario.as_dict(),
        "seed": task.seed, "fold": task.fold, "test_set": task.test_set, "case": task.case,
        "image": str(Path(task.image).resolve()), "label": None if task.label is None else str(Path(task.label).resolve()),
        "files": {"image": data_file_stamp(task.image), "label": None if task.label is None else data_file_stamp(task.label)},
        "surface_metrics": task.surface_metrics, "tolerance_mm": task.tolerance_mm,
        "recompute_instances": task.recompute_instances,
    }


def data_file_stamp(path: Path) -> list[int] | None:
    """Size and modification time (ns) of an image or label: what a resume compares to notice data
    that changed under a run (cheap, unlike a hash of a 100 MB volume); None for a missing file."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def check_data_unchanged(root: Path, keys: Iterable[str]) -> None:
    """Refuse to continue a run whose finished case results were computed from other data: kept,
    they would mix silently with results of the new files (the tables could not tell them apart)."""
    changed = changed_data(root, keys)
    if changed:
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise RunError(f"{root}: cannot resume, the data of {len(changed)} finished case result(s) changed since "
                       f"they were written: {'; '.join(changed[:3])}{more}; evaluate into a new run folder, or "
                       f"delete those cases' folders under {Path(root) / 'parts'} to evaluate them again")


def check_versions(root: Path, recorded: dict[str, str], current: dict[str, str], *,
                   accept_nfbench_version: bool = False) -> list[str]:
    """What a resume under other versions than those the run was started with (config.json's
    ``versions``) must say: its finished results would mix silently with the new ones. Another
    nfbench is refused, its numbers may differ, unless ``accept_nfbench_version``; any other
    change is a note naming each library as ``name old → new``. No note when nothing changed."""
    changed = [f"{name} {recorded.get(name, 'not recorded')} → {current.get(name, 'not recorded')}"
               for name in dict.fromkeys([*current, *recorded]) if recorded.get(name) != current.get(name)]
    if not changed:
        return []
    if recorded.get("nfbench") != current.get("nfbench") and not accept_nfbench_version:
        raise RunError(f"{root}: cannot resume, the run was started with nfbench {recorded.get('nfbench', 'not recorded')} "
                       f"and this is nfbench {current.get('nfbench')}, whose numbers may differ (changed: "
                       f"{', '.join(changed)}); write into a new run folder, or resume with "
                       "--accept-nfbench-version to mix the results of both")
    return [f"{root}: resumed under other versions than the run was started with: {', '.join(changed)}; its tables "
            "will mix results of both (the report's provenance table tells them apart)"]


def kept_cases(store: RunStore, versions: dict[str, str], *, accept_nfbench_version: bool = False,
               on_warning: Callable[[str], None] = lambda note: None) -> set[str]:
    """The finished cases a continued run folder keeps, once it is safe to keep them: refused under
    another nfbench (:func:`check_versions`) or when their data changed (:func:`check_data_unchanged`);
    other changed versions go to ``on_warning``. Evaluate and grid continue a folder alike."""
    for note in check_versions(store.root, store.config.get("versions", {}), versions,
                               accept_nfbench_version=accept_nfbench_version):
        on_warning(note)
    done = store.finished()
    check_data_unchanged(store.root, done)
    return done


def changed_data(root: Path, keys: Iterable[str]) -> list[str]:
    """The finished case results of the run folder ``root`` whose image or label is no longer the
    file they were computed from (changed, replaced or gone), as ``KEY (image|label path)``.

    A part written before files were stamped has nothing to compare and is kept.
    """
    changed = []
    for key in sorted(keys):
        table = Path(root) / "parts" / key / "provenance.parquet"
        if not table.is_file():
            continue
        for text in pd.read_parquet(table, columns=["task_config"])["task_config"]:
            config = json.loads(text)
            stamps = config.get("files") or {}
            moved = [f"{what} {config[what]}" for what in ("image", "label")
                     if stamps.get(what) is not None and data_file_stamp(config[what]) != stamps[what]]
            if moved:
                changed.append(f"{key} ({', '.join(moved)})")
                break
    return changed


def case_provenance(keys: RunKeys, task: object, scenario: Scenario, model: object | None, *, model_seed: int,
                    click_seed: list[int]) -> ProvenanceRow:
    """The provenance row of one case result (``model`` None when it could not be loaded)."""
    package, package_ver = _model_package(model)
    return ProvenanceRow(
        **keys.__dict__,
        study_sha256=task.study_sha256,
        task_config=json.dumps(task_config(task, scenario), sort_keys=True, default=str),
        **_software(),
        model_package=package,
        model_package_version=package_ver,
        weights_sha256=weights_sha256(task.spec.weights),
        device=_device(task.spec, model),
        host=socket.gethostname(),
        model_seed=int(model_seed),
        click_seed=json.dumps([int(v) for v in click_seed]),
    )

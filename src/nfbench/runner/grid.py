"""Studies: one YAML file describes a whole experiment grid; `nfbench grid` expands and runs it.

A study crosses models (weights per fold from a path template), folds, seeds, test sets and their
cases into :class:`~nfbench.runner.tasks.Task` s: one case of one model spec (one fold's weights)
under one seed, evaluated in every protocol of the study (scenarios × presets × click policies),
so the model starts once per case. Every task writes one case result per protocol into one run
folder, whose keys hold the protocol, fold and seed (:func:`nfbench.results.store.row_key`);
`nfbench report` reads it as any run. A rerun skips the case results already there.

The format (``configs/paper.yaml`` and ``configs/demo.yaml`` are complete examples)::

    name: paper                       # for the record
    data: data/NF                     # dataset folder; relative paths are to the working directory
    out: runs/paper                   # the run folder (--out overrides)
    vars: {weights_root: weights}     # names for templates; `--set weights_root=/x` overrides
    phantom: {cases: 2, ...}          # optional: make this phantom in `data` (write_phantom_dataset)
    models:
      - name: sw-fastedit
        weights: "{weights_root}/SW-FastEdit/fold_{fold}/checkpoint.pt"   # {model}, {fold}, vars
        options: {sw_batch_size: 4}   # string values are templates too
        device: auto
        folds: null                   # optional: this model's folds (null: none), else the study's
    folds: [1, 2, 3]                  # null or absent: no fold
    seeds: [0]
    test_sets: [imagesTs_1, imagesTs_2]
    cases: []                         # optional: only these cases
    scenarios:                        # names, or mappings with overrides:
      - lesion-corrective             #   {name, lesions, interactions, stop_dice, alpha, boxes}
      - {name: global-corrective, interactions: 60}
    presets: [paper]                  # default: [default]
    click_policies: [patch, center]   # optional: overrides the presets' policy
    surface_metrics: false
    tolerance_mm: 2.0
    recompute_instances: false
"""

from __future__ import annotations

import difflib
import hashlib
import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from nfbench.interaction.scenarios import Scenario, scenario_from_options
from nfbench.io.dataset import Case
from nfbench.models.spec import ModelSpec
from nfbench.results.store import RunStore
from nfbench.runner.evaluate import prompt_problems, select_cases, versions
from nfbench.runner.executors import WORKER_MODEL_LIMIT, Outcome, run_dask, run_local
from nfbench.runner.provenance import kept_cases
from nfbench.runner.progress import RunProgress
from nfbench.runner.tasks import ModelCache, Task

__all__ = ["StudyError", "Study", "StudyModel", "GridSummary", "load_study", "expand", "parse_only", "run_grid",
           "EXECUTORS", "FILTER_KEYS"]

EXECUTORS = ("local", "dask")
FILTER_KEYS = ("model", "fold", "seed", "test_set", "case", "scenario", "click_policy")
"""What ``--only`` can select on."""

_TOP = ("name", "data", "out", "vars", "phantom", "models", "folds", "seeds", "test_sets", "cases", "scenarios",
        "presets", "click_policies", "surface_metrics", "tolerance_mm", "recompute_instances")
_MODEL = ("name", "weights", "options", "device", "folds")
_SCENARIO = ("name", "lesions", "interactions", "stop_dice", "alpha", "boxes")
_SETTABLE = ("name", "data", "out")
"""Top-level values `--set` may replace, besides the study's vars."""


class StudyError(ValueError):
    """A study file that cannot be expanded: the message names the file and the entry."""


@dataclass(frozen=True)
class StudyModel:
    """A model of the study with its templates still unresolved (they depend on the fold)."""

    name: str
    weights: str | None = None
    options: dict = field(default_factory=dict)
    device: str = "auto"
    folds: tuple[int | None, ...] = (None,)

    def spec(self, fold: int | None, values: dict[str, str]) -> ModelSpec:
        """The model spec for ``fold``, templates filled with ``{model}``, ``{fold}`` and the vars."""
        fill = {**values, "model": self.name, "fold": "" if fold is None else str(fold)}
        options = {k: _fill(v, fill, f"models[{self.name}].options.{k}") if isinstance(v, str) else v
                   for k, v in self.options.items()}
        weights = None if self.weights is None else _path(_fill(self.weights, fill, f"models[{self.name}].weights"))
        return ModelSpec(self.name, weights, options, self.device)


@dataclass(frozen=True)
class Study:
    """A parsed study file, every value checked; :func:`expand` turns it into tasks."""

    path: Path
    sha256: str
    name: str
    data: Path
    out: Path
    models: tuple[StudyModel, ...]
    seeds: tuple[int, ...]
    test_sets: tuple[str, ...]
    cases: tuple[str, ...]
    protocols: tuple[Scenario, ...]
    values: dict[str, str]
    phantom: dict | None = None
    surface_metrics: bool = False
    tolerance_mm: float = 2.0
    recompute_instances: bool = False

    def config(self, run_id: str) -> dict:
        """The run folder's config.json: what decides the numbers (a rerun must agree on it)."""
        specs = [{**s.record(), "fold": f} for m in self.models for f in m.folds
                 for s in [m.spec(f, self.values)]]
        for spec in specs:  # weights are checked per case (provenance), so that a later fold's weights may appear
            spec.pop("weights_identity")
        return {
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kind": "grid",
            "variant_keys": True,
            "study_file": str(self.path.resolve()),
            "study_sha256": self.sha256,
            "name": self.name,
            "data": str(self.data.resolve()),
            "test_sets": list(self.test_sets),
            "models": list(dict.fromkeys(m.name for m in self.models)),
            "model_specs": specs,
            "scenarios": list(dict.fromkeys(p.name for p in self.protocols)),
            "scenario_options": {_label(p): p.as_dict() for p in self.protocols},
            "click_policy": ",".join(sorted({p.recorded_policy for p in self.protocols})),
            "seed": list(self.seeds),
            "fold": sorted({f for m in self.models for f in m.folds}, key=lambda f: (f is None, f or 0)),
            "cases": list(self.cases),
            "surface_metrics": self.surface_metrics,
            "tolerance_mm": self.tolerance_mm,
            "recompute_instances": self.recompute_instances,
            "versions": versions(),
        }


def _label(scenario: Scenario) -> str:
    stop = "none" if scenario.stop_dice is None else f"{scenario.stop_dice:g}"
    return f"{scenario.name} ({scenario.recorded_policy}, budget {scenario.budget}, stop {stop})"


def _fill(template: str, values: dict[str, str], where: str) -> str:
    names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    unknown = [n for n in names if n not in values]
    if unknown:
        raise StudyError(f"{where}: unknown template field {{{unknown[0]}}} in {template!r}; "
                         f"known: {', '.join('{' + k + '}' for k in values)} (add it under vars)")
    return template.format(**values)


def _path(text: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(text)))


def _check_keys(entry: dict, known: tuple[str, ...], where: str) -> None:
    for key in entry:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise StudyError(f"{where}: unknown key {key!r}.{hint} Known: {', '.join(known)}")


def _list(value: object, where: str, kind: type | tuple[type, ...], *, default: tuple = ()) -> tuple:
    if value is None:
        return default
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, kind)]
    if bad:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise StudyError(f"{where}: expected {names} values, got {bad[0]!r}")
    if len(set(map(str, values))) != len(values):
        raise StudyError(f"{where}: {values} lists a value twice")
    return tuple(values)


def _folds(value: object, where: str) -> tuple[int | None, ...]:
    return _list(value, where, int, default=(None,))


def load_study(path: str | Path, *, overrides: dict[str, str] | None = None) -> Study:
    """Read and check a study file; ``overrides`` (``--set NAME=VALUE``) replace vars or top-level
    ``name``, ``data``, ``out``. Raises :class:`StudyError` naming the file and the entry."""
    import yaml

    path = Path(path)
    text = path.read_bytes()
    where = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise StudyError(f"{where}: a study is a mapping of keys (name, data, models, ...)")
    _check_keys(raw, _TOP, where)
    values = {str(k): str(v) for k, v in (raw.get("vars") or {}).items()}
    for name, value in (overrides or {}).items():
        if name in values:
            values[name] = value
        elif name in _SETTABLE:
            raw[name] = value
        else:
            raise StudyError(f"--set {name}={value}: {where} has no var {name!r} "
                             f"(vars: {', '.join(values) or 'none'}; also settable: {', '.join(_SETTABLE)})")
    for key in ("data", "models", "test_sets", "scenarios"):
        if not raw.get(key):
            raise StudyError(f"{where}: {key!r} is missing")
    study_folds = _folds(raw.get("folds"), f"{where}: folds")
    models = []
    for i, entry in enumerate(raw["models"]):
        at = f"{where}: models[{i}]"
        entry = _named_entry(entry, "model", _MODEL, at)
        if not isinstance(entry.get("options") or {}, dict):
            raise StudyError(f"{at}: options must be a mapping of option: value")
        folds = _folds(entry["folds"], f"{at}.folds") if "folds" in entry else study_folds
        models.append(StudyModel(str(entry["name"]), None if entry.get("weights") is None else str(entry["weights"]),
                                 dict(entry.get("options") or {}), str(entry.get("device", "auto")), folds))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise StudyError(f"{where}: model {next(n for n in names if names.count(n) > 1)!r} is listed twice; "
                         "compare two weights of one model in two studies")
    study = Study(
        path=path, sha256=hashlib.sha256(text).hexdigest(), name=str(raw.get("name") or path.stem),
        data=_path(_fill(str(raw["data"]), values, f"{where}: data")),
        out=_path(_fill(str(raw.get("out") or f"runs/{path.stem}"), values, f"{where}: out")),
        models=tuple(models), seeds=_list(raw.get("seeds"), f"{where}: seeds", int, default=(0,)),
        test_sets=_list(raw["test_sets"], f"{where}: test_sets", str),
        cases=_list(raw.get("cases"), f"{where}: cases", str),
        protocols=_protocols(raw, where), values=values,
        phantom=raw.get("phantom"), surface_metrics=bool(raw.get("surface_metrics", False)),
        tolerance_mm=float(raw.get("tolerance_mm", 2.0)), recompute_instances=bool(raw.get("recompute_instances", False)),
    )
    for model in study.models:  # templates and options: checked now, not half-way through a grid
        for fold in model.folds:
            try:
                model.spec(fold, values)
            except ValueError as err:
                raise StudyError(f"{where}: {err}") from err
    return study


def _named_entry(entry: object, what: str, keys: tuple[str, ...], at: str) -> dict:
    """A list item written as a name or as a mapping with a name, its keys checked."""
    entry = {"name": entry} if isinstance(entry, str) else entry
    if not isinstance(entry, dict) or "name" not in entry:
        raise StudyError(f"{at}: a {what} is a name or a mapping with a name")
    _check_keys(entry, keys, at)
    return entry


def _protocols(raw: dict, where: str) -> tuple[Scenario, ...]:
    """Scenarios × presets × click policies, resolved; protocols that would share results are refused."""
    presets = _list(raw.get("presets"), f"{where}: presets", str, default=("default",))
    policies = _list(raw.get("click_policies"), f"{where}: click_policies", str, default=(None,))
    found: dict[tuple, Scenario] = {}
    for i, entry in enumerate(raw["scenarios"]):
        at = f"{where}: scenarios[{i}]"
        entry = _named_entry(entry, "scenario", _SCENARIO, at)
        options = {k: v for k, v in entry.items() if k != "name"}
        if "stop_dice" in options and str(options["stop_dice"]).lower() in ("none", "null"):
            options["stop_dice"] = None
        for preset in presets:
            for policy in policies:
                try:
                    scenario = scenario_from_options(str(entry["name"]), preset=preset, click_policy=policy, **options)
                except (TypeError, ValueError) as err:
                    raise StudyError(f"{at}: {err}") from err
                if "interactions" in options and not scenario.corrective:
                    raise StudyError(f"{at}: {scenario.name} makes one click per prompted lesion and takes no "
                                     "interactions (its budget follows from lesions); remove it")
                key = (scenario.name, scenario.recorded_policy, scenario.budget, scenario.stop_dice)
                same = found.get(key)
                if same is not None and replace(same, click_policy=scenario.click_policy,
                                                preset=scenario.preset) != scenario:
                    raise StudyError(f"{at}: two protocols of {scenario.name} share click policy, budget and stop "
                                     f"({_label(scenario)}) but differ otherwise; their results would be mixed up")
                found.setdefault(key, scenario)
    return tuple(found.values())


def parse_only(items: list[str]) -> dict[str, set[str]]:
    """``["model=sw-fastedit,fold=1", ...]`` → {key: accepted values}; a key given twice takes either."""
    chosen: dict[str, set[str]] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not value.strip():
                raise StudyError(f"--only {item!r}: write KEY=VALUE[,KEY=VALUE...] with keys {', '.join(FILTER_KEYS)}")
            if key not in FILTER_KEYS:
                close = difflib.get_close_matches(key, FILTER_KEYS, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise StudyError(f"--only: unknown key {key!r}.{hint} Keys: {', '.join(FILTER_KEYS)}")
            chosen.setdefault(key, set()).add(value.strip())
    return chosen


def _keep(only: dict[str, set[str]], **values: object) -> bool:
    return all(str(v) in only[k] for k, v in values.items() if k in only)


def expand(study: Study, cases: list[tuple[str, Case]], *, only: dict[str, set[str]] | None = None,
           run_id: str = "", root: Path | None = None) -> list[Task]:
    """Every task of the study on ``cases``, ordered by model, fold, seed, test set and case (so a
    worker meets one model spec after the other); ``only`` keeps the matching ones."""
    only = only or {}
    protocols = tuple(p for p in study.protocols
                      if _keep(only, scenario=p.name, click_policy=p.recorded_policy))
    tasks = []
    for model in study.models:
        for fold in model.folds:
            spec = model.spec(fold, study.values)
            for seed in study.seeds:
                for test_set, case in cases:
                    if not protocols or not _keep(only, model=model.name, fold=fold, seed=seed, test_set=test_set,
                                                  case=case.name):
                        continue
                    tasks.append(Task(run_id, test_set, case.name, case.image, case.label, spec, protocols,
                                      seed=seed, fold=fold, surface_metrics=study.surface_metrics,
                                      tolerance_mm=study.tolerance_mm, recompute_instances=study.recompute_instances,
                                      predictions=None, study_sha256=study.sha256, variant_keys=True))
    return tasks


@dataclass
class GridSummary:
    run: Path
    tasks: int
    results: int
    skipped: int = 0
    evaluated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def check_tasks(tasks: list[Task], *, only: dict[str, set[str]] | None = None, loaded: dict | None = None) -> list[str]:
    """Refuse a plan that cannot run: no task (``only`` matched nothing), or a model that cannot
    run its tasks (those of ``loaded`` models, given ready, are not checked); returns the notes of
    :func:`_check_models`."""
    if not tasks:
        raise StudyError("no task matches" + (f" --only {_only_text(only)}" if only else ""))
    return _check_models([t for t in tasks if t.spec.name not in (loaded or {})])


def _check_models(tasks: list[Task]) -> list[str]:
    """Every spec of the tasks: options, dependencies, weight files, and prompts the scenarios give;
    all problems at once, before any work. Returns the notes a reader should know (options unlike
    the weights' card, click-only models under a box step)."""
    from nfbench.models.base import ModelError
    from nfbench.models.registry import card_mismatches, check_spec

    problems, notes, seen = [], [], set()
    for task in tasks:
        identity = (task.spec.name, str(task.spec.weights), repr(sorted(task.spec.options.items())), task.spec.device)
        if identity in seen:
            continue
        seen.add(identity)
        fold = "" if task.fold is None else f" (fold {task.fold})"
        try:
            info = check_spec(task.spec)
        except ModelError as err:
            problems.append(f"{err}{fold}")
            continue
        refusals, found = prompt_problems(task.spec.name, info.capabilities, task.scenarios)
        problems += refusals
        notes += card_mismatches(task.spec) + found
    if problems:
        raise StudyError(f"{len(problems)} problem(s) with the study's models: " + "; ".join(dict.fromkeys(problems)))
    return list(dict.fromkeys(notes))


def plan_grid(study: Study, *, only: dict[str, set[str]] | None = None, check: bool = True,
              quiet: bool = False) -> list[Task]:
    """The study's tasks (making its phantom first, when it has one)."""
    if study.phantom is not None:
        from nfbench.runner.demo import ensure_phantom

        if not isinstance(study.phantom, dict):
            raise StudyError(f"{study.path}: phantom must be a mapping of `nfbench data phantom` options")
        try:
            ensure_phantom(study.data, quiet=quiet, **study.phantom)
        except TypeError as err:
            raise StudyError(f"{study.path}: phantom: {err}") from err
    if not study.data.is_dir():
        raise StudyError(f"{study.path}: data folder {str(study.data)!r} does not exist (--set data=PATH)")
    cases = select_cases(study.data, study.test_sets, study.cases, check=check)
    return expand(study, cases, only=only)


def run_grid(study: Study, out: str | Path | None = None, *, only: dict[str, set[str]] | None = None,
             executor: str = "local", jobs: int = 1, scheduler: str | None = None, quiet: bool = False,
             models: dict | None = None, accept_nfbench_version: bool = False,
             on_warning: Callable[[str], None] = lambda note: None) -> GridSummary:
    """Run the study's tasks (``only`` the matching ones) into one run folder, ``out`` or the study's.

    The run folder is created or, when it exists, continued: case results already there are
    skipped, and a study whose configuration differs from the folder's is refused, as is another
    nfbench version unless ``accept_nfbench_version``. Failed case results are listed in the summary
    (and retried by the next run); they do not stop the others. ``models`` gives loaded models by
    name (tests, notebooks; the local executor only). ``on_warning`` hears what :func:`check_tasks`
    notes, and the libraries whose versions changed since the folder was started, before any work.
    """
    if executor not in EXECUTORS:
        raise StudyError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    if int(jobs) != jobs or jobs < 1:
        raise StudyError(f"the number of parallel jobs must be a whole number >= 1, got {jobs}")
    out = Path(out or study.out)
    tasks = plan_grid(study, only=only, quiet=quiet)
    for note in check_tasks(tasks, only=only, loaded=models or {}):
        on_warning(note)
    config = study.config(out.name)
    store = RunStore(out, config, resume=True)
    done = kept_cases(store, config["versions"], accept_nfbench_version=accept_nfbench_version, on_warning=on_warning)
    pending, skipped = [], 0
    for task in tasks:
        task = replace(task, run_id=store.run_id)
        left = tuple(s for s in task.scenarios if task.key(s) not in done)
        skipped += len(task.scenarios) - len(left)
        if left:
            pending.append(replace(task, scenarios=left))
    summary = GridSummary(out, tasks=len(tasks), results=sum(len(t.scenarios) for t in tasks), skipped=skipped)
    outcome = Outcome()
    with RunProgress(total=summary.results, quiet=quiet, sessions=False) as progress:
        progress.skip(skipped)
        if executor == "dask":
            run_dask(pending, store.root, scheduler=scheduler, progress=progress, outcome=outcome, workers=jobs)
        else:
            run_local(pending, store.root, jobs=jobs, models=ModelCache(models, limit=WORKER_MODEL_LIMIT),
                      progress=progress, outcome=outcome)
    summary.evaluated, summary.failed = outcome.evaluated, outcome.failed
    store.consolidate()
    return summary


def _only_text(only: dict[str, set[str]] | None) -> str:
    return ",".join(f"{k}={v}" for k, values in (only or {}).items() for v in sorted(values))

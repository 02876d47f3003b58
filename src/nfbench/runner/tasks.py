"""Tasks: one case of one model spec under a set of scenarios, described as plain data.

A worker runs a task from its description alone (loading the model through the registry once and
keeping it for the next task) and returns the case's rows; only the driver writes the run store.
The model is started once per case, and its session is reset between scenarios, so a per-case
cache (image features, a no-click forward pass) is built once for every scenario.
"""

from __future__ import annotations

import time
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfbench.interaction.loop import simulate_case
from nfbench.interaction.scenarios import Scenario
from nfbench.interaction.scoring import score_case
from nfbench.io.check import image_problems, label_problems
from nfbench.io.volume import Volume, VolumeError, load_volume, save_volume
from nfbench.lesions import Lesion, instance_map, lesion_table
from nfbench.models.base import InteractiveModel, ModelError
from nfbench.models.registry import load_spec
from nfbench.models.spec import ModelSpec
from nfbench.results.schema import CaseRow, RunKeys
from nfbench.results.store import row_key
from nfbench.runner.memory import PeakMemory
from nfbench.runner.provenance import case_provenance

__all__ = ["Task", "TaskOutput", "ModelCache", "run_task", "case_rng", "click_seed", "model_seed"]

@dataclass(frozen=True)
class Task:
    """Everything a worker needs to evaluate one case with one model."""

    run_id: str
    test_set: str
    case: str
    image: Path
    label: Path | None
    spec: ModelSpec
    scenarios: tuple[Scenario, ...]
    seed: int = 0
    fold: int | None = None
    surface_metrics: bool = False
    tolerance_mm: float = 2.0
    recompute_instances: bool = False
    predictions: Path | None = None  # the run's predictions folder, when they are saved
    study_sha256: str = ""  # of the study file the task comes from (`nfbench grid`)
    variant_keys: bool = False  # a grid's run store: keys also hold protocol, fold and seed

    def keys(self, scenario: Scenario) -> RunKeys:
        """The key columns of this task's rows in ``scenario``."""
        return RunKeys(run_id=self.run_id, model=self.spec.name, scenario=scenario.name,
                       click_policy=scenario.recorded_policy, budget=scenario.budget,
                       stop_dice=float("nan") if scenario.stop_dice is None else scenario.stop_dice,
                       seed=self.seed, fold=self.fold, test_set=self.test_set, case=self.case)

    def key(self, scenario: Scenario) -> str:
        """The run-store key of this task's result in ``scenario``."""
        return row_key(self.keys(scenario), variant=self.variant_keys)


@dataclass
class TaskOutput:
    """The rows (and overlay preview) of one scenario of a task, under its run-store key."""

    key: str
    tables: dict[str, list]
    preview: dict[str, np.ndarray] | None

    @property
    def failed(self) -> str | None:
        row = self.tables["cases"][0]
        return None if row.status == "ok" else row.error


class ModelCache:
    """Models loaded in this process, by spec; a worker loads each model once.

    ``preloaded`` models (by name) stand for every spec of that name. ``limit`` keeps at most that
    many loaded specs, dropping the least recently used: a study's worker meets one spec per model
    and fold, in order, and needs no more than the current one in memory.
    """

    def __init__(self, preloaded: dict[str, InteractiveModel] | None = None, *, limit: int | None = None) -> None:
        self._preloaded: dict[str, InteractiveModel] = dict(preloaded or {})
        self._models: dict[tuple, InteractiveModel] = {}
        self._limit = limit

    def get(self, spec: ModelSpec) -> InteractiveModel:
        if spec.name in self._preloaded:
            return self._preloaded[spec.name]
        identity = (spec.name, str(spec.weights), repr(sorted(spec.options.items())), spec.device)
        model = self._models.pop(identity, None) or load_spec(spec)
        self._models[identity] = model  # most recently used last
        while self._limit is not None and len(self._models) > self._limit:
            self._models.pop(next(iter(self._models)))
        return model


def click_seed(seed: int, scenario: str, test_set: str, case: str) -> list[int]:
    """The seed sequence of the simulated user's generator for one scenario on one case."""
    return [seed, zlib.crc32(f"{scenario}/{test_set}/{case}".encode())]


def case_rng(seed: int, scenario: str, test_set: str, case: str) -> np.random.Generator:
    """One stream per (scenario, case): every model meets the same random choices, and a resumed or
    parallel run draws exactly what the uninterrupted one drew."""
    return np.random.default_rng(click_seed(seed, scenario, test_set, case))


def model_seed(seed: int, test_set: str, case: str) -> int:
    """The seed a model receives for one case: fixed by the run's seed and the case alone."""
    state = np.random.SeedSequence([seed, zlib.crc32(f"model/{test_set}/{case}".encode())])
    return int(state.generate_state(1)[0])


@dataclass
class _LoadedCase:
    image: Volume
    label: Volume
    instances: np.ndarray
    lesions: list[Lesion]


def _refuse(path: Path, problems: list[str]) -> None:
    """Raise the problems of one file as the case's error, with the messages of ``nfbench data check``."""
    if problems:
        raise VolumeError(f"{path}: {'; '.join(problems)}")


def _load_case(task: Task) -> _LoadedCase:
    """The case's image, label and lesions; the grids were checked when the task was planned
    (:func:`~nfbench.runner.evaluate.select_cases`), the voxel values are checked here: complex or
    non-finite image voxels, and label values that are not integers or not lesion IDs (unless the
    instances are recomputed), would give wrong scores with no error."""
    if task.label is None:
        raise VolumeError(f"{task.image}: image without label")
    image = load_volume(task.image, dtype=np.float32)  # refuses complex voxels
    _refuse(task.image, image_problems(image.data))
    image.data.setflags(write=False)  # shared by every model and scenario of the case: a model must not edit it
    label = load_volume(task.label)
    _refuse(task.label, label_problems(label.data, keep_ids=not task.recompute_instances))
    data = label.data if label.data.dtype.kind in "biu" else label.data.astype(np.int64)
    instances = instance_map(data, recompute=task.recompute_instances)
    return _LoadedCase(image, label, instances, lesion_table(instances, affine=image.affine))


def _preview(loaded: _LoadedCase, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Coronal projections (along posterior→anterior) for the report's overlays."""
    truth = loaded.instances > 0
    sx, _, sz = loaded.image.spacing
    return {
        "image": loaded.image.data.max(axis=1).astype(np.float32),
        "tp": (pred & truth).any(axis=1),
        "fp": (pred & ~truth).any(axis=1),
        "fn": (truth & ~pred).any(axis=1),
        "spacing": np.array([sx, sz], dtype=np.float32),
    }


def _message(err: BaseException) -> str:
    """The error of a failed case: nfbench's own refusals say all in one line; any other error (a
    bug, often in a plug-in model) keeps the innermost frames of its traceback, where it happened."""
    message = f"{type(err).__name__}: {err}"
    if not isinstance(err, (ModelError, VolumeError)):
        message += "\n" + "".join(traceback.format_exception(err, limit=-4))
    return message


def _provenance(task: Task, scenario: Scenario, model: InteractiveModel | None):
    return case_provenance(task.keys(scenario), task, scenario, model,
                           model_seed=model_seed(task.seed, task.test_set, task.case),
                           click_seed=click_seed(task.seed, scenario.name, task.test_set, task.case))


def failed_output(task: Task, scenario: Scenario, error: str, model: InteractiveModel | None = None) -> TaskOutput:
    """The output of a scenario that could not be evaluated: a failed case row and its provenance."""
    return TaskOutput(task.key(scenario), {"cases": [CaseRow.failed(task.keys(scenario), error)],
                                           "provenance": [_provenance(task, scenario, model)]}, None)


def run_task(task: Task, models: ModelCache, *, progress=None) -> list[TaskOutput]:
    """Evaluate every scenario of the task; a failing case or model gives failed rows, never raises."""
    try:
        loaded = _load_case(task)
    except (VolumeError, OSError, ValueError) as err:
        return [failed_output(task, s, str(err)) for s in task.scenarios]
    model = None
    try:
        model = models.get(task.spec)
        tick = time.perf_counter()
        session = model.start(loaded.image, seed=model_seed(task.seed, task.test_set, task.case))
        start_s = time.perf_counter() - tick
    except Exception as err:  # noqa: BLE001 - a failing model must not stop the run
        return [failed_output(task, s, _message(err), model) for s in task.scenarios]
    outputs = []
    try:
        for scenario in task.scenarios:
            outputs.append(_run_scenario(task, scenario, model, session, loaded, start_s, progress))
    finally:
        close = getattr(session, "close", None)
        if callable(close):
            close()
    return outputs


def _run_scenario(task: Task, scenario: Scenario, model: InteractiveModel, session: object, loaded: _LoadedCase,
                  start_s: float, progress) -> TaskOutput:
    keys = task.keys(scenario)
    tick = time.perf_counter()
    try:
        rng = case_rng(task.seed, scenario.name, task.test_set, task.case)
        with PeakMemory() as peak:
            result = simulate_case(model, session, loaded.image, loaded.instances, loaded.lesions, scenario, keys,
                                   rng=rng, surface=task.surface_metrics, tolerance_mm=task.tolerance_mm,
                                   progress=progress)
        case = score_case(keys, loaded.image, loaded.instances, loaded.lesions, scenario, result.prediction,
                          result.interactions, tolerance_mm=task.tolerance_mm,
                          wall_time_s=time.perf_counter() - tick, peak_memory_mb=peak.mb,
                          peak_gpu_memory_mb=peak.gpu_mb, model_start_s=start_s)
        if task.predictions is not None:
            target = task.predictions / task.spec.name / scenario.name / task.test_set / f"{task.case}.nii.gz"
            save_volume(loaded.label, target, data=result.prediction.astype(np.uint8))
    except Exception as err:  # noqa: BLE001 - a failing model must not stop the run
        return failed_output(task, scenario, _message(err), model)
    tables = {"clicks": result.clicks, "interactions": result.interactions, "lesions": result.lesions,
              "cases": [case], "provenance": [_provenance(task, scenario, model)]}
    return TaskOutput(task.key(scenario), tables, _preview(loaded, result.prediction))

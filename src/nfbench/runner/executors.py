"""Executors: run a list of tasks into a run folder, in this process, a local pool, or on Dask.

Every executor gives the same tables: a task's numbers depend on its description alone
(:mod:`nfbench.runner.tasks`), each case result is one part of the run folder written atomically,
and the run store orders the parts by key when it consolidates them. A task that raises, or whose
worker dies, becomes failed case rows; the other tasks go on.

- ``run_local(jobs=1)``: in this process, with the models already loaded.
- ``run_local(jobs=N)``: a process pool whose workers each load a model once and keep it for the
  next task; the driver writes the results. Ctrl-C (SIGINT) is the driver's alone: it stops the
  workers at once, dropping the cases they run, and keeps every case result already written.
- ``run_dask``: a Dask distributed cluster (a scheduler address, or a local cluster); the workers
  write their results into the shared run folder themselves and return only the keys and errors.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from nfbench.models.spec import ModelSpec, resolve_device
from nfbench.results.store import write_part
from nfbench.runner.progress import RunProgress
from nfbench.runner.tasks import ModelCache, Task, TaskOutput, failed_output, run_task

__all__ = ["Outcome", "run_local", "run_dask", "WORKER_MODEL_LIMIT"]

WORKER_MODEL_LIMIT = 2
"""Specs a pool or Dask worker keeps loaded (tasks come ordered by model and fold)."""


@dataclass
class Outcome:
    """What an executor did: case results written, and the failed ones as (key, error)."""

    evaluated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def record(self, key: str, error: str | None, progress: RunProgress) -> None:
        self.evaluated += 1
        if error is not None:
            self.failed.append((key, error))
        progress.finished(failed=error is not None)


def _write(root: Path, outputs: Iterable[TaskOutput]) -> list[tuple[str, str | None]]:
    written = []
    for output in outputs:
        write_part(root, output.key, output.tables, output.preview)
        written.append((output.key, output.failed))
    return written


def _crashed(task: Task, err: BaseException) -> list[TaskOutput]:
    message = f"the task's worker failed: {type(err).__name__}: {err}"
    return [failed_output(task, scenario, message) for scenario in task.scenarios]


# A worker process's models: inherited from the driver when the pool forks, else loaded per spec.
_WORKER_MODELS: ModelCache | None = None


def _worker_models() -> ModelCache:
    global _WORKER_MODELS
    if _WORKER_MODELS is None:
        _WORKER_MODELS = ModelCache(limit=WORKER_MODEL_LIMIT)
    return _WORKER_MODELS


def _worker_run(task: Task) -> list[TaskOutput]:
    return run_task(task, _worker_models())


def _pool(jobs: int, specs: Iterable[ModelSpec], models: ModelCache) -> ProcessPoolExecutor:
    """Forked workers share the driver's loaded models (copy-on-write); a CUDA model needs fresh
    processes, which load it from its spec."""
    global _WORKER_MODELS
    cuda = any(resolve_device(s.device) == "cuda" for s in specs)
    if cuda or "fork" not in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                                   initargs=(False,))
    _WORKER_MODELS = models
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start,
                               initargs=(True,))


def _worker_start(forked: bool) -> None:
    """A worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and a worker's
    KeyboardInterrupt would come back as a failed case; the driver stops the workers itself.

    A forked worker's torch runs on one thread: the driver's OpenMP thread pool does not survive
    a fork, and a convolution in the child would wait on it forever (``--jobs`` gives the cores)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch") if forked else None
    if torch is not None:
        torch.set_num_threads(1)


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the workers now, dropping their running cases: ``shutdown`` alone would first run every
    submitted case, and only Python 3.14 has a public ``terminate_workers``."""
    for worker in list(pool._processes.values()):
        worker.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_local(tasks: list[Task], root: Path, *, jobs: int, models: ModelCache, progress: RunProgress,
              outcome: Outcome) -> None:
    """Run ``tasks`` in this process (``jobs=1``) or in ``jobs`` worker processes, writing into ``root``."""
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            progress.start_case(f"{task.spec.name} · {task.case}")
            for key, error in _write(root, run_task(task, models, progress=progress.lesion)):
                outcome.record(key, error, progress)
        return
    with _pool(jobs, [t.spec for t in tasks], models) as pool:
        try:
            pending = {pool.submit(_worker_run, task): task for task in tasks}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = pending.pop(future)
                    error = future.exception()
                    outputs = _crashed(task, error) if error is not None else future.result()
                    for key, failed in _write(root, outputs):
                        outcome.record(key, failed, progress)
        except KeyboardInterrupt:
            _stop(pool)
            raise


def _dask_task(task: Task, root: str) -> list[tuple[str, str | None]]:
    """On a Dask worker: evaluate the task and write its case results into the shared run folder."""
    return _write(Path(root), run_task(task, _worker_models()))


def run_dask(tasks: list[Task], root: Path, *, scheduler: str | None, progress: RunProgress, outcome: Outcome,
             workers: int = 1) -> None:
    """Run ``tasks`` on the Dask cluster at ``scheduler`` (``tcp://HOST:PORT``), or on a local cluster
    of ``workers`` processes when it is None. ``root`` must be reachable by every worker under the
    same path (a shared file system on a cluster)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise ImportError('the Dask executor needs dask.distributed: pip install "nfbench[dask]"') from err
    cluster = None
    if scheduler is None:
        # One thread per worker: a task is one model on one case, and models keep state per process.
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=workers > 1,
                               dashboard_address=None)
    try:
        with Client(cluster or scheduler) as client:
            futures = {client.submit(_dask_task, task, str(Path(root).resolve()), pure=False): task
                       for task in tasks}
            for future in as_completed(futures):
                task = futures[future]
                if future.status == "error":
                    results = _write(root, _crashed(task, future.exception()))
                else:
                    results = future.result()
                for key, error in results:
                    outcome.record(key, error, progress)
                future.release()
    finally:
        if cluster is not None:
            cluster.close()

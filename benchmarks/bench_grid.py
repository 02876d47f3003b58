"""`nfbench grid` at scale, measured: Dask scheduling overhead per task, and --jobs 2 over --jobs 1.

1. Overhead per task of the local Dask cluster: the same N tiny tasks (the ``sphere`` baseline, one
   ``lesion-single`` click on a tiny phantom case, a few ms of work each) run by the in-process
   executor and by ``--executor dask``; the overhead is (Dask wall − in-process wall) / N, i.e.
   scheduling, serialising the task, and the worker's reply. Also the bare round trip of N no-op
   functions on the same cluster (Dask alone, no nfbench). Cluster start-up is excluded (timed
   separately); target ≤ 50 ms per task.
2. Speed-up of ``--executor local --jobs 2`` over ``--jobs 1`` on the demo's workload (the small
   phantom of configs/demo.yaml, region-grow and random-walker, lesion- and global-corrective).

Every process runs with OMP_NUM_THREADS=1 (set below) so that ``--jobs`` decides the cores used.

    python benchmarks/bench_grid.py [--tasks 200] [--skip-speedup]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from nfbench.phantom import write_phantom_dataset  # noqa: E402
from nfbench.runner.grid import load_study, run_grid  # noqa: E402


def _study(folder: Path, data: Path, **fields: object) -> Path:
    path = folder / f"{fields.get('name', 'study')}.yaml"
    path.write_text(yaml.safe_dump({"data": str(data), **fields}, sort_keys=False))
    return path


def tiny_tasks(work: Path, n_tasks: int) -> tuple[Path, int]:
    """A tiny phantom and a study of ``n_tasks`` one-click tasks on it (seeds multiply the tasks)."""
    data = work / "tiny"
    write_phantom_dataset(data, cases=2, test_cases=1, size="tiny", burden="low", seed=7, progress=False)
    cases = 4  # imagesTr (2), imagesTs_1, imagesTs_2
    seeds = list(range(max(1, n_tasks // cases)))
    study = _study(work, data, name="tiny", models=["sphere"], seeds=seeds,
                   test_sets=["imagesTr", "imagesTs_1", "imagesTs_2"],
                   scenarios=[{"name": "lesion-single", "lesions": 1}])
    return study, len(seeds) * cases


def dask_overhead(work: Path, n_tasks: int) -> dict[str, float]:
    from distributed import Client, LocalCluster

    study_file, n = tiny_tasks(work, n_tasks)
    study = load_study(study_file)
    tick = time.perf_counter()
    run_grid(study, work / "local" / "run", quiet=True)
    local_s = time.perf_counter() - tick
    results = {"tasks": n, "in-process wall (s)": local_s}
    for workers in (1, 2):
        tick = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=workers > 1, dashboard_address=None)
        start_s = time.perf_counter() - tick
        scheduler = cluster.scheduler_address
        with Client(scheduler) as client:  # the bare round trip of no-op tasks on this cluster
            client.submit(int, 0).result()
            tick = time.perf_counter()
            client.gather([client.submit(int, i, pure=False) for i in range(n)])
            noop_ms = (time.perf_counter() - tick) / n * 1000
        # warm the workers (imports, first model load) with the same study into a throwaway folder
        run_grid(study, work / f"warm{workers}" / "run", executor="dask", scheduler=scheduler, quiet=True)
        tick = time.perf_counter()
        run_grid(study, work / f"dask{workers}" / "run", executor="dask", scheduler=scheduler, quiet=True)
        dask_s = time.perf_counter() - tick
        cluster.close()
        label = f"{workers} worker{'s' if workers > 1 else ''} ({'processes' if workers > 1 else 'threads'})"
        results[f"{label}: cluster start (s)"] = start_s
        results[f"{label}: grid wall (s)"] = dask_s
        # worker-time per task beyond the in-process run's: with 2 workers, each spends 2 × wall / n per task
        results[f"{label}: overhead per task vs in-process (ms)"] = (dask_s * workers - local_s) / n * 1000
        results[f"{label}: no-op round trip per task (ms)"] = noop_ms
    return results


def speedup(work: Path) -> dict[str, float]:
    demo = load_study(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    study = _study(work, demo.data, name="speed", phantom=demo.phantom, models=["region-grow", "random-walker"],
                   test_sets=list(demo.test_sets), scenarios=["lesion-corrective", "global-corrective"])
    study = load_study(study)
    walls = {}
    for jobs in (1, 2):
        tick = time.perf_counter()
        summary = run_grid(study, work / f"jobs{jobs}" / "run", jobs=jobs, quiet=True)
        walls[jobs] = time.perf_counter() - tick
        assert not summary.failed, summary.failed
    return {"tasks": summary.tasks, "case results": summary.results, "--jobs 1 wall (s)": walls[1],
            "--jobs 2 wall (s)": walls[2], "speed-up": walls[1] / walls[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="tiny tasks for the Dask overhead")
    parser.add_argument("--skip-speedup", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    try:
        for name, value in dask_overhead(work, args.tasks).items():
            print(f"dask  {name}: {value:.1f}" if isinstance(value, float) else f"dask  {name}: {value}")
        if not args.skip_speedup:
            for name, value in speedup(work).items():
                print(f"jobs  {name}: {value:.2f}" if isinstance(value, float) else f"jobs  {name}: {value}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

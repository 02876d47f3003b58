"""Simulation overhead per interaction and peak memory on a full-size high-burden phantom (issue 3).

Run: ``.venv/bin/python benchmarks/bench_overhead.py [--lesions 200] [--seed 0] [--naive-repeats 2]``

1. Makes one full-size phantom case (800 × 31 × 2900 voxels, ≈72 M) with ``--lesions`` lesions and
   writes it as a one-case dataset.
2. Evaluates ``region-grow`` on it with ``lesion-corrective`` (20 lesions × 3) and
   ``global-corrective`` (60 interactions, no early stop) with ``nfbench evaluate`` in a fresh
   process each, and reports the median of the ``overhead_ms`` column (click placement + metrics;
   model time excluded) and the peak resident memory of that process (loading included).
3. Times a plain full-volume implementation of one interaction's work on the same case (error map,
   scipy 26-connected labelling, scipy distance transform in mm of the whole error map, Dice over
   the whole volume), so the ratio against nfbench's cropped computation is measured in the same run.

Prints a Markdown block to paste into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from nfbench.io.volume import save_volume
from nfbench.phantom import make_case


def naive_interaction(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """One interaction's simulation work done the plain way, over the whole volume."""
    error = pred ^ truth
    labels, n = ndimage.label(error, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    depth = ndimage.distance_transform_edt(largest, sampling=spacing)
    int(np.argmax(depth))
    return 2.0 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive-repeats", type=int, default=2,
                        help="timed runs of the plain full-volume interaction (0: skip the comparison)")
    args = parser.parse_args()
    if args.naive_repeats < 0:
        parser.error(f"--naive-repeats must be 0 or more, got {args.naive_repeats}")

    start = time.perf_counter()
    case = make_case(size="full", burden="high", rng=args.seed, n_lesions=args.lesions)
    print(f"phantom: shape {case.image.shape}, {case.n_lesions} lesions, {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        image, label = case.volumes()
        save_volume(image, data / "imagesTs_1" / "full.nii.gz")
        save_volume(label, data / "labelsTs_1" / "full.nii.gz")
        rows = []
        for scenario, extra in (("lesion-corrective", []), ("global-corrective", ["--stop-dice", "none"])):
            run = Path(tmp) / scenario
            # A fresh process per scenario, so its peak memory is the evaluation's alone.
            command = [sys.executable, "-m", "nfbench.cli", "evaluate", "--data", str(data), "--test-set",
                       "imagesTs_1", "--model", "region-grow", "--scenario", scenario, "--out", str(run), "--quiet", *extra]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - start
            process_peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0
            inter = pd.read_parquet(run / "interactions.parquet")
            cases = pd.read_parquet(run / "cases.parquet")
            used = inter[~inter["carried_forward"]]
            rows.append((scenario, len(used), float(used["overhead_ms"].median()),
                         float(used["overhead_ms"].quantile(0.9)), float(used["latency_ms"].median()),
                         process_peak_mb, float(cases["dice_scan"].iloc[0]), wall))

    truth = case.label > 0
    pred = np.zeros_like(truth)
    pred[case.label == 1] = True  # a realistic mid-session state: one lesion found, the rest missed
    naive = []
    for _ in range(args.naive_repeats):
        start = time.perf_counter()
        naive_interaction(pred, truth, case.spacing)
        naive.append((time.perf_counter() - start) * 1000.0)
    naive_ms = statistics.median(naive) if naive else math.nan

    print(f"\nMachine: {platform.processor() or platform.machine()}, {platform.platform()}, CPU only")
    print("| scenario | interactions | overhead median (ms) | overhead p90 (ms) | region-grow latency median (ms) "
          "| peak memory of the evaluate process (MB) | final scan Dice | wall (s) | plain full-volume / nfbench |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, med, p90, lat, mem, d, wall in rows:
        ratio = f"{naive_ms / med:.0f}×" if naive else "–"
        print(f"| {name} | {n} | {med:.1f} | {p90:.1f} | {lat:.1f} | {mem:.0f} | {d:.3f} | {wall:.1f} | {ratio} |")
    if naive:
        print(f"\nPlain full-volume interaction (scipy label + EDT in mm + Dice): median {naive_ms:.0f} ms over {len(naive)} runs")


if __name__ == "__main__":
    main()

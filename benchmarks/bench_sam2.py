"""SAM2's per-case feature cache: latency per interaction with and without it (issue 10).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_sam2.py [--size full]
[--image-size 1024] [--lesions 1] [--clicks 3] [--threads 1] [--seed 0]``

1. Makes one phantom case (``--size full``: 800 × 31 × 2900 voxels at 0.625 × 7.8 × 0.625 mm,
   31 coronal frames of 2900 × 800 pixels; low burden, seed ``--seed``) and picks the ``--lesions``
   largest lesions. Per lesion, ``reset`` then ``--clicks`` clicks, one per interaction: the lesion
   voxel nearest its centroid, then, alternately, a seeded voxel of the 1-voxel shell around the
   lesion (negative) and a seeded voxel of the lesion (positive).
2. The tiny SAM 2.1 (``configs/sam2.1/sam2.1_hiera_t.yaml``), randomly initialised (the cost does
   not depend on the weights), on the CPU at ``--image-size``, loaded through ``load_spec`` as
   ``nfbench evaluate`` loads it; ``cache_features=true`` (every frame encoded once per case) and
   ``false`` (every visited frame encoded at every interaction, as SAM2's video predictor and the
   original), each in a fresh session. Timed: ``start`` and, per interaction, ``add_click`` +
   ``predict`` (the latency the engine records). Every answer of the two sessions is checked equal.

The ratio is the mean latency per interaction without the cache over the mean with it, over all
interactions (with the cache, the first one pays the encoder on every frame) and over the
interactions after the first (the steady state of a case's remaining interactions, lesions and
scenarios). Prints a Markdown block to paste into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from scipy import ndimage

from nfbench.lesions import instance_map, lesion_table
from nfbench.models.base import check_prediction
from nfbench.models.registry import load_spec
from nfbench.models.spec import ModelSpec
from nfbench.phantom import make_case
from nfbench.types import Click

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def _clicks(instances: np.ndarray, lesions, count: int, rng: np.random.Generator) -> list[list[Click]]:
    """Per lesion: the voxel nearest its centroid, then shell (negative) and lesion (positive) voxels."""
    sequences = []
    for lesion in lesions:
        box = lesion.bbox
        inside = instances[box] == lesion.lesion_id
        offset = np.array([s.start for s in box])
        voxels = np.argwhere(inside)
        first = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
        grown = ndimage.binary_dilation(np.pad(inside, 1))[1:-1, 1:-1, 1:-1]
        shell = np.argwhere(grown & ~inside)
        clicks = [Click(tuple(int(v) for v in first + offset), True)]
        for n in range(1, count):
            pool, positive = (shell, False) if n % 2 else (voxels, True)
            clicks.append(Click(tuple(int(v) for v in pool[rng.integers(len(pool))] + offset), positive))
        sequences.append(clicks)
    return sequences


def _session_run(model, image, sequences) -> tuple[float, list[float], list[np.ndarray], int]:
    started = time.perf_counter()
    session = model.start(image)
    start_s = time.perf_counter() - started
    latencies, answers = [], []
    for clicks in sequences:
        session.reset()
        mask = np.zeros(image.shape, bool)
        for click in clicks:
            tic = time.perf_counter()
            session.add_click(click)
            answer = session.predict()
            latencies.append(time.perf_counter() - tic)
            answer = check_prediction(model.name, answer, image.shape)
            mask[answer.box] = answer.mask
            answers.append(mask.copy())
    return start_s, latencies, answers, session.encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--lesions", type=int, default=1)
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    image, label = make_case(size=args.size, burden="low", rng=args.seed).volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    lesions = lesion_table(instances, affine=image.affine)[:args.lesions]
    print(f"case {image.shape} ({time.perf_counter() - tic:.0f} s to make), {len(lesions)} lesions", flush=True)
    sequences = _clicks(instances, lesions, args.clicks, np.random.default_rng(args.seed))
    rows, answers = {}, {}
    for cache in (True, False):
        torch.manual_seed(0)
        spec = ModelSpec("sam2", options={"init": "random", "config": CONFIG, "image_size": args.image_size,
                                          "cache_features": cache}, device="cpu")
        model = load_spec(spec)
        start_s, latencies, masks, encoded = _session_run(model, image, sequences)
        rows[cache], answers[cache] = (start_s, latencies, encoded), masks
        print(f"cache_features={cache}: start {start_s:.2f} s, latencies {[round(x, 2) for x in latencies]} s, "
              f"{encoded} frames encoded", flush=True)
    assert all(np.array_equal(a, b) for a, b in zip(answers[True], answers[False])), "answers differ"
    with_cache, without = rows[True][1], rows[False][1]
    frames = image.shape[1]
    print()
    print(f"#### SAM2 feature cache ({args.size} phantom {image.shape[0]} × {image.shape[1]} × {image.shape[2]}, "
          f"{frames} frames; tiny SAM 2.1 at {args.image_size}², random weights, CPU, {args.threads} thread(s); "
          f"{platform.processor() or platform.machine()})")
    print()
    print("| cache_features | start (s) | 1st interaction (s) | later interactions, mean (s) | mean, all (s) "
          "| frames encoded |")
    print("|---|---|---|---|---|---|")
    for cache in (True, False):
        start_s, latencies, encoded = rows[cache]
        later = statistics.mean(latencies[1:]) if len(latencies) > 1 else float("nan")
        print(f"| {str(cache).lower()} | {start_s:.2f} | {latencies[0]:.2f} | {later:.2f} | "
              f"{statistics.mean(latencies):.2f} | {encoded} |")
    print()
    ratio_all = statistics.mean(without) / statistics.mean(with_cache)
    ratio_later = statistics.mean(without[1:]) / statistics.mean(with_cache[1:]) if len(without) > 1 else float("nan")
    print(f"Per interaction, without the cache / with it: {ratio_all:.1f}× over all {len(without)} interactions, "
          f"{ratio_later:.1f}× after the first; answers identical.")
    if len(with_cache) > 1:  # with the cache, the first interaction also encodes every frame once
        encoder = (with_cache[0] - statistics.mean(with_cache[1:])) / frames
        print(f"Derived: image encoder ≈ {encoder:.2f} s per frame; tracking and answer ≈ "
              f"{statistics.mean(with_cache[1:]) / frames:.2f} s per frame and interaction.")


if __name__ == "__main__":
    main()

"""Mapping a CNN's answer back to the native grid per click: the whole grid against the changed windows.

Run: ``PYTHONPATH=src python benchmarks/bench_native_answer.py [--clicks 20] [--seed 0]``

A full-size native grid (800 × 31 × 2900 voxels at 0.625 × 7.8 × 0.625 mm) and a model grid of
SRA at 2.5 × 2.5 × 7.8 mm (725 × 200 × 31, the size of the phantom-trained models' grid) holding
lesion-like blobs. Each click re-blends one hull of windows around it (``--hull`` model voxels,
default two 128 × 96 × 31 windows side by side) and changes the mask there: the clicked blob
grows by a ball (radius 2-5 voxels) and ``--flips`` voxels of the hull change sign (borderline
voxels of a re-run window); the per-click cost of

- *full*: the whole model grid mapped back (``GridMap.to_native``) and compared with the previous
  answer, as the sessions did before (with ``keep_clicked``: after labelling the whole grid);
- *scipy*: the same with ``scipy.ndimage.affine_transform`` for the resampling, the earlier
  ``resample(order=0)``;
- *partial*: :class:`~nfbench.models.blocks.native_answer.NativeAnswer` over the hull only

is timed (median over the clicks, model time excluded), every partial answer checked against the
full one. Prints a Markdown block for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage

from nfbench.bbox import mask_bbox
from nfbench.components import connected_components
from nfbench.models.blocks.grids import GridMap
from nfbench.models.blocks.native_answer import NativeAnswer

NATIVE, SPACING = (800, 31, 2900), (0.625, 7.8, 0.625)


def _scipy_to_native(grid: GridMap, model: np.ndarray) -> np.ndarray:
    oriented = grid.orientation.permute(grid.crop_shape)
    scale = np.array([m / n for m, n in zip(model.shape, oriented)])
    out = ndimage.affine_transform(model.view(np.uint8), scale, offset=0.5 * scale - 0.5, output_shape=oriented,
                                   order=0, mode="nearest").astype(bool)
    return np.ascontiguousarray(grid.orientation.to_native(out))


def _kept(raw: np.ndarray, seeds: list, keep: bool) -> np.ndarray:
    if not keep:
        return raw
    labels, _ = connected_components(raw)
    return np.isin(labels, sorted({labels[s] for s in seeds} - {0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hull", default="256,96,31", help="model voxels (S, R, A) re-blended per click")
    parser.add_argument("--flips", type=int, default=0, help="voxels of the hull that change sign per click")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    hull = tuple(int(v) for v in args.hull.split(","))
    grid = GridMap.build(NATIVE, SPACING, codes="SRA", spacing=(2.5, 2.5, 7.8))
    raw = np.zeros(grid.shape, bool)
    for _ in range(60):  # lesion-like blobs, 2-6 model voxels across
        centre = [int(rng.integers(0, n)) for n in grid.shape]
        raw[tuple(slice(max(c - r, 0), c + r) for c, r in zip(centre, rng.integers(1, 4, 3)))] = True
    rows = []
    for keep in (False, True):
        answer = NativeAnswer(grid, NATIVE, keep_clicked=keep)
        answer.reset(mask_bbox(raw))
        answer.update(lambda b: raw[b])  # touch the native array's pages once, as an earlier lesion would
        answer.reset(mask_bbox(raw))
        seeds: list = []
        before = np.zeros(NATIVE, bool)
        times = {"full": [], "scipy": [], "partial": []}
        for click in range(args.clicks):
            on = np.argwhere(raw)
            seed = tuple(int(v) for v in on[rng.integers(len(on))])
            seeds.append(seed)
            box = tuple(slice(max(min(c - h // 2, n - h), 0), max(min(c - h // 2, n - h), 0) + h)
                        for c, h, n in zip(seed, hull, grid.shape))
            radius = int(rng.integers(2, 6))
            ball = tuple(slice(max(c - radius, 0), c + radius + 1) for c in seed)
            offsets = np.indices(raw[ball].shape) - np.array([c - b.start for c, b in zip(seed, ball)])[:, None, None, None]
            raw[ball] |= (offsets**2).sum(axis=0) <= radius**2
            flips = tuple(rng.integers(b.start, b.stop, args.flips) for b in box)
            raw[flips] ^= True
            answer.changed([box])
            t = time.perf_counter()
            prediction = answer.update(lambda b: raw[b], seeds)
            times["partial"].append(time.perf_counter() - t)
            t = time.perf_counter()
            full = grid.to_native(_kept(raw, seeds, keep))
            changed = mask_bbox(full != before)
            times["full"].append(time.perf_counter() - t)
            t = time.perf_counter()
            mask_bbox(_scipy_to_native(grid, _kept(raw, seeds, keep)) != before)
            times["scipy"].append(time.perf_counter() - t)
            assert prediction.box == changed or (changed is None and prediction.mask.size == 0)
            assert np.array_equal(answer.native, full)
            before = full
        rows.append((keep, {k: 1e3 * statistics.median(v[1:]) for k, v in times.items()},
                     1e3 * times["partial"][0]))
    print(f"Model grid {grid.shape} (SRA, 2.5 × 2.5 × 7.8 mm) → native {NATIVE}; hull {hull} per click, "
          f"{args.flips} flips; {args.clicks} clicks, seed {args.seed}.\n")
    print("| answer | full remap (ms) | full, scipy resampling (ms) | partial (ms) | first after reset (ms) |")
    print("|---|---|---|---|---|")
    for keep, median, first in rows:
        print(f"| {'keep_clicked' if keep else 'whole mask'} | {median['full']:.1f} | {median['scipy']:.1f} | "
              f"**{median['partial']:.1f}** | {first:.1f} |")


if __name__ == "__main__":
    main()

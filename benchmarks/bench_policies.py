"""Time ``next_clicks`` for every policy on a full-size synthetic whole-body volume.

Run: ``.venv/bin/python benchmarks/bench_policies.py [--repeats 7] [--blobs 200] [--seed 0]
[--policies center center-voxel] [--plain-repeats 0]``

The volume is 800 x 31 x 2900 voxels (72 M, the size of the neurofibroma WB-MRI scans in RAS) with
spacing (0.625, 7.8, 0.625) mm; the truth holds ``--blobs`` ellipsoids and the prediction is the
truth with every blob shifted, some missed and some false blobs added, so errors are scattered over
the whole body. Each policy is timed without a box and with a lesion-sized box (the largest blob's
box + 2 voxels), and compared with a plain full-volume implementation (scipy label + scipy distance
transform of the whole error component), which shows what the cropping saves.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np
from scipy import ndimage

from nfbench.interaction.policies import POLICIES, next_clicks

SHAPE = (800, 31, 2900)
SPACING = (0.625, 7.8, 0.625)


def synthetic_case(
    n_blobs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice, slice]]:
    """Truth, prediction and the largest truth blob's box (+2 voxels) of a 72 M-voxel volume."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    boxes = []
    for b in range(n_blobs):
        radius_mm = rng.uniform(4.0, 30.0, size=3)
        radius = np.maximum(radius_mm / np.asarray(SPACING), 0.6)
        centre = rng.uniform(radius, np.asarray(SHAPE) - radius)
        shift = rng.integers(-3, 4, size=3) * np.array([1, 0, 1])
        kind = b % 10  # 0: missed lesion, 1: false blob, else lesion with a shifted prediction
        for target, c in ((truth, centre), (pred, centre + shift)):
            if (kind == 0 and target is pred) or (kind == 1 and target is truth):
                continue
            lo = np.maximum(np.floor(c - radius).astype(int), 0)
            hi = np.minimum(np.ceil(c + radius).astype(int) + 1, SHAPE)
            grid = np.ogrid[tuple(slice(lo[a], hi[a]) for a in range(3))]
            inside = sum(((g - c[a]) / radius[a]) ** 2 for a, g in enumerate(grid)) <= 1.0
            target[tuple(slice(lo[a], hi[a]) for a in range(3))] |= inside
            if target is truth:
                boxes.append(
                    (
                        int(inside.sum()),
                        tuple(
                            slice(max(int(lo[a]) - 2, 0), min(int(hi[a]) + 2, SHAPE[a]))
                            for a in range(3)
                        ),
                    )
                )
    return truth, pred, max(boxes, key=lambda x: x[0])[1]


def plain_center(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[int, ...]:
    """The rule without any cropping: full-volume labelling and distance transform."""
    labels, _ = ndimage.label(pred != truth, structure=np.ones((3, 3, 3), bool))
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    component = np.pad(labels == int(np.argmax(counts)), 1)
    depth = ndimage.distance_transform_edt(component, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tick) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--blobs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plain-repeats",
        type=int,
        default=1,
        help="repeats of the slow full-volume version (0: skip it)",
    )
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    args = parser.parse_args()
    truth, pred, box = synthetic_case(args.blobs, args.seed)
    n_errors = int(np.count_nonzero(pred != truth))
    print(f"volume {SHAPE} ({np.prod(SHAPE) / 1e6:.0f} M voxels), spacing {SPACING}")
    print(f"{args.blobs} blobs, {n_errors} error voxels")
    print(f"lesion box {tuple((s.start, s.stop) for s in box)}")
    print(f"{'policy':<14}{'whole volume (ms)':>20}{'lesion box (ms)':>18}")
    for policy in args.policies:
        rng = np.random.default_rng(args.seed)
        whole = median_ms(
            partial(next_clicks, pred, truth, spacing=SPACING, rng=rng, policy=policy), args.repeats
        )
        boxed = median_ms(
            partial(next_clicks, pred, truth, spacing=SPACING, rng=rng, policy=policy, box=box),
            args.repeats,
        )
        print(f"{policy:<14}{whole:>20.1f}{boxed:>18.2f}")
    if args.plain_repeats < 1:
        return
    ours = next_clicks(pred, truth, spacing=SPACING, rng=np.random.default_rng(0))[0].ijk
    plain_click: list[tuple[int, ...]] = []
    plain = median_ms(
        lambda: plain_click.append(plain_center(pred, truth, SPACING)), args.plain_repeats
    )
    print(f"{'plain center':<14}{plain:>20.1f}{'':>18}  (scipy label + EDT on the full volume)")
    print(f"center click: ours {ours}, plain {plain_click[0]}")


if __name__ == "__main__":
    main()

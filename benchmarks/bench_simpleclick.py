"""SimpleClick's per-click latency on one frame, with and without the per-frame embedding cache (issue 11).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_simpleclick.py
[--config reduced|original|both] [--clicks 4] [--threads 1] [--frame 2900x800] [--crop 0] [--seed 0]``

A random uint8 frame of ``--frame`` pixels (the default: a full-size coronal frame, 2900 × 800 at
0.625 mm), a randomly initialised network (the cost does not depend on the weights) at the reduced
CPU configuration (``REDUCED``: 256 × 256, embed 96, depth 4) and/or the original ViT-B/16 at
1024 × 1024, and :class:`~nfbench.models.simpleclick.SliceClicker` answering ``--clicks`` clicks one
after another, each answer fed back as the previous mask, as on a clicked slice. Timed per click:
``predict`` with ``key`` (the frame's preprocessing and patch embedding cached: the first click pays
them) and with ``key=None`` (everything every click, as the original's predictor on a reloaded
model). Every answer of the two is checked equal. Prints a Markdown block for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np


def _run(clicker, frame: np.ndarray, clicks: list[tuple[int, int, bool]], key) -> tuple[list[float], list[np.ndarray]]:
    times, masks, previous = [], [], None
    for n in range(1, len(clicks) + 1):
        start = time.perf_counter()
        previous = clicker.predict(frame, clicks[:n], previous, key=key)
        times.append(time.perf_counter() - start)
        masks.append(previous)
    return times, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("reduced", "original", "both"), default="both")
    parser.add_argument("--clicks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frame", default="2900x800", help="rows x columns of the frame")
    parser.add_argument("--crop", type=int, default=0, help="SliceClicker's crop (0: the whole frame, the original)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from nfbench.models.simpleclick import ORIGINAL, REDUCED, SliceClicker, build_network

    torch.set_num_threads(args.threads)
    rows, columns = (int(v) for v in args.frame.lower().split("x"))
    rng = np.random.default_rng(args.seed)
    frame = rng.integers(0, 256, (rows, columns), dtype=np.uint8)
    clicks = [(int(rng.integers(rows)), int(rng.integers(columns)), n % 3 != 1) for n in range(args.clicks)]
    configs = {"reduced": REDUCED, "original": ORIGINAL}
    chosen = list(configs) if args.config == "both" else [args.config]
    lines = [f"SimpleClick per-click latency, frame {rows} × {columns}, crop {args.crop}, {args.clicks} clicks, "
             f"{args.threads} torch thread(s), {platform.processor() or platform.machine()}, torch {torch.__version__}",
             "", "| configuration | parameters | cached: 1st click | cached: later clicks | uncached: per click | speed-up |",
             "|---|---|---|---|---|---|"]
    for name in chosen:
        config = configs[name]
        torch.manual_seed(args.seed)
        network = build_network(config)
        clicker = SliceClicker(network, crop=args.crop)
        clicker.predict(frame, clicks[:1], None)  # warm-up (allocator, kernels)
        cached, cached_masks = _run(clicker, frame, clicks, key="frame")
        plain, plain_masks = _run(clicker, frame, clicks, key=None)
        assert all(np.array_equal(a, b) for a, b in zip(cached_masks, plain_masks)), "cached answers differ"
        later = statistics.mean(cached[1:]) if len(cached) > 1 else cached[0]
        per_click = statistics.mean(plain)
        parameters = sum(p.numel() for p in network.parameters())
        lines.append(f"| {name} ({config.image_size}², embed {config.embed_dim}, depth {config.depth}) | "
                     f"{parameters / 1e6:.1f} M | {cached[0] * 1e3:.0f} ms | {later * 1e3:.0f} ms | "
                     f"{per_click * 1e3:.0f} ms | {per_click / later:.2f}× |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""STCN propagation: latency per propagate call through a case's frames, key cache on and off (issue 11).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_stcn.py [--size full] [--configs reduced original]
[--max-side 0 1024] [--span 10] [--repeats 3] [--threads 1] [--seed 0]``

1. Makes one phantom case (``--size full``: 800 × 31 × 2900 voxels, frames of 2900 × 800 pixels; low
   burden, seed ``--seed``), its frames as :class:`~nfbench.models.blocks.frames.FrameStack` cuts them,
   and picks the lesion whose frame extent is nearest ``--span`` frames; its largest frame is the
   annotated one, the propagation is limited to ``--span`` frames around it (random weights: where a
   mask vanishes means nothing, so ``stop_empty`` is off and every call runs the same frames).
2. Per configuration (``reduced``, ``original``) and frame scale (``--max-side``: 0 = native), a
   randomly initialised network on ``--threads`` threads:
   - key cache on: the first call (cold: it encodes the keys of the frames it reaches) and
     ``--repeats`` later calls (warm: as after each further click; the annotated mask grows by one
     pixel row each call, so its value is encoded again as after a real click);
   - key cache off: ``--repeats`` calls, each recomputing every key.
   Reports ms per call and per propagated frame, and the size of the key cache.

Prints a Markdown block to paste into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from scipy import ndimage

from nfbench.lesions import instance_map
from nfbench.models.blocks.frames import FrameStack
from nfbench.models.stcn import Propagator, build_network
from nfbench.phantom import make_case


def _lesion(labels: np.ndarray, span: int) -> tuple[int, np.ndarray, int]:
    """``(frame, mask, extent)``: the lesion whose frame extent is nearest ``span``, on its largest frame."""
    best = None
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        extent = where[0].stop - where[0].start
        if best is None or abs(extent - span) < abs(best[1] - span):
            best = (index, extent)
    assert best is not None, "the phantom has no lesion"
    areas = (labels == best[0]).sum(axis=(1, 2))
    frame = int(np.argmax(areas))
    return frame, labels[frame] == best[0], best[1]


def _timed(propagator: Propagator, annotated: dict, limit: tuple[int, int]) -> tuple[float, int]:
    tick = time.perf_counter()
    out = propagator.propagate(annotated, stop_empty=False, limit=limit)
    return time.perf_counter() - tick, len(out) - len(annotated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--configs", nargs="+", default=["reduced", "original"])
    parser.add_argument("--max-side", nargs="+", type=int, default=[0, 1024])
    parser.add_argument("--span", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    image, label = make_case(size=args.size, burden="low", rng=args.seed).volumes(image_dtype=np.float32)
    stack = FrameStack.of(image.shape, image.spacing)
    frames = stack.frames(np.asarray(image.data))
    labels = np.stack([stack.frame(instance_map(np.asarray(label.data)), n) for n in range(stack.n_frames)])
    frame, mask, extent = _lesion(labels, args.span)
    first = max(0, frame - args.span // 2)
    limit = (first, min(stack.n_frames - 1, first + args.span - 1))
    print(f"### STCN propagation ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.device}, random weights)\n")
    print(f"Phantom {args.size}, seed {args.seed}: {stack.n_frames} frames of {frames.shape[1]} × {frames.shape[2]}; "
          f"lesion over {extent} frames, annotated on frame {frame} ({int(mask.sum())} pixels), propagated over "
          f"frames {limit[0]}–{limit[1]}.\n")
    print("| config | frame in network | cache | calls | ms per call | ms per frame | key cache (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        torch.manual_seed(args.seed)
        network = build_network(name)
        for side in args.max_side:
            for cache in (True, False):
                propagator = Propagator(network, frames, device=args.device, max_side=side or None, cache=cache)
                size = "×".join(str(n) for n in propagator.geometry.padded)
                grown = mask.copy()
                times, reached = [], 0
                for _ in range(args.repeats + (1 if cache else 0)):
                    grown = grown | ndimage.binary_dilation(grown, np.ones((3, 1), bool))
                    seconds, reached = _timed(propagator, {frame: grown}, limit)
                    times.append(seconds)
                megabytes = sum(t.numel() * t.element_size() for f in propagator._keys.values() for t in f) / 2**20
                rows = [("on, cold", times[:1]), ("on, warm", times[1:])] if cache else [("off", times)]
                for label_, values in rows:
                    ms = 1000 * float(np.mean(values))
                    print(f"| {name} | {size} | {label_} | {len(values)} | {ms:.0f} | {ms / max(reached, 1):.0f} | "
                          f"{megabytes:.0f} |", flush=True)


if __name__ == "__main__":
    main()

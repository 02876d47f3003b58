"""LiteMedSAM speed: encoder per tile, decoder per prompt, latency per interaction cold and warm, cost per case.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_litemedsam.py [--threads 1]
[--burden low] [--seed 5] [--repeats 5] [--scenario lesion-corrective global-corrective]``

1. Encoder: ``--repeats`` calls of the image encoder on one 256 × 256 tile of a small phantom frame
   (median, first call excluded); decoder: prompt encoder + mask decoder for one box (median).
2. One small phantom case (200 × 31 × 725 voxels at 2.5 × 7.8 × 2.5 mm, ``--burden``, ``--seed``) through
   the engine in each ``--scenario`` at its default budget (lesion-corrective: 20 lesions × 3
   interactions, stop at Dice 1; global-corrective: 60 interactions, stop at scan Dice 0.8), as
   ``nfbench demo`` runs it: wall time of the case (model start included), tiles encoded, latency
   per interaction. The cache starts empty (cold) and is shared by the scenarios, as in a run.
3. The first scenario again in the same session (every tile it needs already cached: warm): latency
   per interaction and tiles encoded (0 when the answers are the same).
4. With ``--real-mri STEP``: the MNI152 T1 template of nilearn at STEP mm and its deep CSF spaces as
   targets (``tests/models/real_mri.py``), dark (T1) and bright (inverted), ``lesion-corrective``
   with a box on each target's largest coronal slice and 3 interactions, the shipped weights against
   ``init=random``: mean lesion Dice after each interaction.

Prints a Markdown block to paste into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from nfbench.interaction.loop import simulate_case
from nfbench.interaction.scenarios import scenario_from_options
from nfbench.lesions import instance_map, lesion_table
from nfbench.models.litemedsam import LiteMedSAMModel
from nfbench.phantom import make_case
from nfbench.results.schema import RunKeys


def _keys(scenario) -> RunKeys:
    return RunKeys(run_id="bench", model="litemedsam", scenario=scenario.name, click_policy=scenario.recorded_policy,
                   budget=scenario.budget, stop_dice=float("nan") if scenario.stop_dice is None else scenario.stop_dice,
                   seed=0, fold=None, test_set="bench", case="bench")


def _median_time(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--burden", default="low")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenario", nargs="+", default=["lesion-corrective", "global-corrective"])
    parser.add_argument("--real-mri", type=int, default=0, metavar="STEP", help="also the MNI152 check at STEP mm")
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = LiteMedSAMModel(precision=args.precision)
    load_s = time.perf_counter() - start
    image, label = make_case(size="small", burden=args.burden, rng=args.seed).volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    lesions = lesion_table(instances, affine=image.affine)

    session = model.start(image)
    tile = session.grid.choose((300, 60, 310, 70))
    pixels = session._tile_pixels(15, tile)
    embedding = model.encode(pixels)
    encode_s = _median_time(lambda: model.encode(pixels), args.repeats)
    decode_s = _median_time(lambda: model.decode(embedding, (100.0, 100.0, 140.0, 150.0), []), args.repeats * 4)
    session.close()

    rows = []
    start = time.perf_counter()
    session = model.start(image)
    start_s = time.perf_counter() - start
    for name in args.scenario:
        scenario = scenario_from_options(name)
        encoded, tick = session.tiles_encoded, time.perf_counter()
        result = simulate_case(model, session, image, instances, lesions, scenario, _keys(scenario),
                               rng=np.random.default_rng(0))
        wall = time.perf_counter() - tick
        latencies = [r.latency_ms for r in result.interactions if not r.carried_forward]
        rows.append((f"{name} (cold)", wall, session.tiles_encoded - encoded, latencies))
    scenario = scenario_from_options(args.scenario[0])
    encoded, tick = session.tiles_encoded, time.perf_counter()
    result = simulate_case(model, session, image, instances, lesions, scenario, _keys(scenario),
                           rng=np.random.default_rng(0))
    wall = time.perf_counter() - tick
    rows.append((f"{args.scenario[0]} (warm)", wall, session.tiles_encoded - encoded,
                 [r.latency_ms for r in result.interactions if not r.carried_forward]))

    print(f"### LiteMedSAM speed ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), encoder {args.precision})\n")
    print(f"Small phantom, burden {args.burden}, seed {args.seed}: {image.shape} voxels, {len(lesions)} lesions; "
          f"model load {load_s:.1f} s, session start (frames) {start_s * 1000:.0f} ms.\n")
    print(f"- image encoder: {encode_s:.2f} s per 256 × 256 tile (median of {args.repeats})")
    print(f"- prompt encoder + mask decoder: {decode_s * 1000:.0f} ms per prompt (median of {args.repeats * 4})\n")
    print("| run | case wall (s) | tiles encoded | interactions | latency mean (ms) | latency median (ms) |")
    print("|---|---|---|---|---|---|")
    for label_, wall, tiles, latencies in rows:
        print(f"| {label_} | {wall:.1f} | {tiles} | {len(latencies)} | {np.mean(latencies):.0f} | "
              f"{np.median(latencies):.0f} |")
    if args.real_mri:
        _real_mri(args.real_mri, args.precision)


def _real_mri(step: int, precision: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.models
    from tests.models.real_mri import mni_case

    scenario = scenario_from_options("lesion-corrective", boxes=True, interactions=3, stop_dice=None)
    print(f"\nMNI152 T1 (nilearn) at {step} mm, deep CSF spaces, lesion-corrective, box + 2 clicks\n")
    print("| targets | weights | lesions | Dice @1 (box) | @2 | @3 | tiles encoded | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for inverted, polarity in ((False, "dark (T1)"), (True, "bright (inverted)")):
        image, instances, lesions = mni_case(step, inverted=inverted)
        for init in ("pretrained", "random"):
            model = LiteMedSAMModel(init=init, precision=precision)
            session, tick = model.start(image), time.perf_counter()
            result = simulate_case(model, session, image, instances, lesions, scenario, _keys(scenario),
                                   rng=np.random.default_rng(0))
            dice = [np.mean([r.dice_lesion for r in result.interactions if r.interaction == t]) for t in (1, 2, 3)]
            print(f"| {polarity} | {init} | {len(lesions)} | {dice[0]:.3f} | {dice[1]:.3f} | {dice[2]:.3f} | "
                  f"{session.tiles_encoded} | {time.perf_counter() - tick:.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""Latency per corrective click of ``region-grow`` (with and without its caches) and where LiteMedSAM's goes.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_click_latency.py [--size small] [--seed 21]
[--clicks 50] [--repeats 3] [--litemedsam LESIONS]``

One phantom case (``--size``, burden low, difficulty realistic, ``--seed``), its largest lesion:
``--clicks`` corrective clicks drawn by the ``uniform`` policy (a random voxel of the largest error
component, so that positive and negative clicks mix and keep coming) inside the lesion's box padded by
20 voxels, each answered before the next is drawn. Two sessions take the same clicks, interleaved
click by click so that both see the same machine load: the model as shipped, and the same model with
its per-case caches off (:class:`~nfbench.models.baselines.region_grow.GrownCache` of 0 bytes and the
surroundings read anew per region: the code path before the caches). Their masks are compared after
every click (the run stops with an error if they ever differ). Prints a Markdown table of the median
and maximum latency per click (``add_click`` + ``predict``), positive and negative clicks apart, over
``--repeats`` runs (the per-click median of the repeats), and the ratio.

With ``--litemedsam LESIONS`` (one thread, shipped weights): the small phantom of seed 5 through
``lesion-corrective`` on its ``LESIONS`` largest lesions, clicks only and with boxes, one session each
(cold cache): latency per interaction, the share of it spent in the image encoder, the tiles encoded
against the distinct (frame, tile) pairs asked for, and the decoder prompts that repeat an earlier one
of the same frame and tile (what a decoder cache could save).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from nfbench.bbox import pad_bbox
from nfbench.interaction.policies import next_clicks
from nfbench.lesions import instance_map, lesion_table
from nfbench.models.baselines.region_grow import GrownCache, RegionGrowModel
from nfbench.phantom import make_case


def uncached(session):
    """``session`` with its caches off: every growth and surroundings computed anew (the old path)."""
    session.grown_cache = GrownCache(0)
    session.surroundings = session._read_surroundings
    return session


def run(image, truth, box, clicks: int) -> tuple[list[bool], list[float], list[float]]:
    """Signs of the clicks and latencies (s) of the cached and uncached sessions, masks checked equal."""
    model = RegionGrowModel()
    sessions = (model.start(image), uncached(model.start(image)))
    masks = [np.zeros(image.shape, bool) for _ in sessions]
    rng = np.random.default_rng(0)
    signs, times = [], ([], [])
    for _ in range(clicks):
        drawn = next_clicks(masks[0], truth, spacing=image.spacing, rng=rng, box=box, policy="uniform")
        if not drawn:
            break
        signs.append(drawn[0].positive)
        for session, mask, latency in zip(sessions, masks, times):
            start = time.perf_counter()
            for click in drawn:
                session.add_click(click)
            answer = session.predict()
            latency.append(time.perf_counter() - start)
            mask[answer.box] = answer.mask
        if not np.array_equal(*masks):
            raise SystemExit(f"masks differ after click {len(signs)}: the caches changed a result")
    return signs, *times


def litemedsam(lesions: int) -> None:
    """Where LiteMedSAM's interaction latency goes (encoder, decoder, repeated prompts)."""
    import torch

    from nfbench.interaction.loop import simulate_case
    from nfbench.interaction.scenarios import scenario_from_options
    from nfbench.models.litemedsam import LiteMedSAMModel
    from nfbench.results.schema import RunKeys

    torch.set_num_threads(1)
    model = LiteMedSAMModel()
    image, label = make_case(size="small", burden="low", rng=5).volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    table = lesion_table(instances, affine=image.affine)
    encode, encoder_s = model.encode, []

    def timed_encode(pixels):
        start = time.perf_counter()
        try:
            return encode(pixels)
        finally:
            encoder_s.append(time.perf_counter() - start)

    model.encode = timed_encode
    print(f"\nLiteMedSAM, small phantom seed 5 {image.shape}, lesion-corrective on {lesions} lesions, 1 thread\n")
    print("| prompts | interactions | latency median / max (ms) | encoder share | tiles encoded / distinct | "
          "decoder prompts / repeated |")
    print("|---|---|---|---|---|---|")
    for boxes in (False, True):
        scenario = scenario_from_options("lesion-corrective", lesions=lesions, boxes=boxes)
        keys = RunKeys(run_id="bench", model="litemedsam", scenario=scenario.name,
                       click_policy=scenario.recorded_policy, budget=scenario.budget, stop_dice=float("nan"),
                       seed=0, fold=None, test_set="bench", case="bench")
        session, prompts, encoder_s[:] = model.start(image), [], []
        decode = session._decode

        def logged_decode(frame, tile, embedding, prompt, decode=decode, prompts=prompts):
            prompts.append((frame, tile, prompt))
            return decode(frame, tile, embedding, prompt)

        session._decode = logged_decode
        result = simulate_case(model, session, image, instances, table, scenario, keys, rng=np.random.default_rng(0))
        latency = [r.latency_ms for r in result.interactions if not r.carried_forward]
        print(f"| {'box + clicks' if boxes else 'clicks'} | {len(latency)} | {statistics.median(latency):.0f} / "
              f"{max(latency):.0f} | {sum(encoder_s) * 1e3 / sum(latency):.0%} | {session.tiles_encoded} / "
              f"{len(session.cache.items)} | {len(prompts)} / {len(prompts) - len(set(prompts))} |")
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "full"))
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--litemedsam", type=int, default=0, metavar="LESIONS")
    args = parser.parse_args()
    image, label = make_case(size=args.size, burden="low", rng=args.seed, difficulty="realistic").volumes(
        image_dtype=np.float32)
    instances = instance_map(label.data)
    lesion = max(lesion_table(instances, affine=image.affine), key=lambda row: row.n_voxels)
    truth = instances == lesion.lesion_id
    box = pad_bbox(lesion.bbox, 20, instances.shape)
    runs = [run(image, truth, box, args.clicks) for _ in range(args.repeats)]
    signs = runs[0][0]
    cached = [statistics.median(r[1][n] for r in runs) for n in range(len(signs))]
    plain = [statistics.median(r[2][n] for r in runs) for n in range(len(signs))]
    print(f"region-grow, {args.size} phantom seed {args.seed} {image.shape}, lesion {lesion.lesion_id} "
          f"({lesion.n_voxels} voxels), {len(signs)} clicks ({sum(signs)} positive), median of {args.repeats} runs; "
          "masks equal after every click\n")
    print("| clicks | n | caches off: median / max (ms) | caches on: median / max (ms) | ratio median / max |")
    print("|---|---|---|---|---|")
    for name, keep in (("all", (True, False)), ("positive", (True,)), ("negative", (False,))):
        picked = [n for n, sign in enumerate(signs) if sign in keep]
        if not picked:
            continue
        before, after = [plain[n] * 1e3 for n in picked], [cached[n] * 1e3 for n in picked]
        print(f"| {name} | {len(picked)} | {statistics.median(before):.0f} / {max(before):.0f} | "
              f"{statistics.median(after):.0f} / {max(after):.0f} | "
              f"{statistics.median(before) / statistics.median(after):.2f} / {max(before) / max(after):.2f} |")
    if args.litemedsam:
        litemedsam(args.litemedsam)


if __name__ == "__main__":
    main()

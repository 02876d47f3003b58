"""Incremental sliding window of the CNNs: windows and latency per interaction, start cost, peak memory (issue 9).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_cnn_speed.py [--lesions 5] [--clicks 3] [--seed 0]
[--models sw-fastedit dins] [--threads 2] [--full 2]``

1. Makes one phantom case (``--size full``: 800 × 31 × 2900 voxels at 0.625 × 7.8 × 0.625 mm, ≈72 M;
   low burden, seed ``--seed``), writes its image as NIfTI and picks the ``--lesions`` largest
   lesions. Per lesion, ``--clicks`` clicks, one per interaction: the lesion voxel nearest its
   centroid, then, alternately, a seeded voxel of the 1-voxel shell around the lesion (negative)
   and a seeded voxel of the lesion (positive), i.e. corrections near the lesion.
2. Each model runs in a fresh process (so its peak resident memory is its own), from a weight file of a randomly
   initialised network (windows and time do not depend on the weights), loaded through
   ``load_spec`` as ``nfbench evaluate`` loads it, the image loaded as the runner loads it (float32).
   Timed: ``model.start(image)``, which runs every window once without clicks (the no-click cache,
   paid once per case); then, per lesion, ``reset`` and per interaction ``add_click`` + ``predict``
   (the latency the engine records), with the windows it ran (the delta of ``session.windows_run``).
3. Full pass: the same session replays the first ``--full`` interactions of the same sequence with
   its cache's answers cleared before each ``predict``, so every window runs and is blended, as a
   plain sliding window would; each of its predictions is checked equal to the incremental one.
   At the original grid one full pass of SW-FastEdit costs as much as ``start``, hence few of them.

Models: ``sw-fastedit`` at the original grid and window (0.625, 0.625, 7.8 mm; 128 × 128 × 64, overlap
0.25) with narrower filters 8-16-32-64-128-128 (full width, 32-64-128-256-320-320, takes ≈4.6 s a
window on a 2-core CPU); ``dins`` at the original grid and window (1.7, 1.7, 7.8 mm; 512 × 160 × 10,
overlap 0.25) with ``base_filters=8, max_filters=64``; ``sw-fastedit-phantom`` and ``dins-phantom``
with their shipped weights when they are registered (skipped otherwise).

On the 2-core development machine alone, the defaults take ≈ 10 min: ``dins`` ≈ 2 min,
``sw-fastedit`` ≈ 8 min (its start and each full pass ≈ 2.5 min).

Prints a Markdown block to paste into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from nfbench.io.volume import load_volume, save_volume
from nfbench.lesions import lesion_table
from nfbench.models.registry import available_models, load_spec
from nfbench.models.spec import ModelSpec, parse_option
from nfbench.phantom import make_case
from nfbench.types import Click

#: Options of the random-weight configurations (the rest are the models' defaults: the original grid and window).
RANDOM = {
    "sw-fastedit": {"filters": "8,16,32,64,128,128"},
    "dins": {"base_filters": "8", "max_filters": "64"},
}
#: Models with shipped weights, measured when registered.
SHIPPED = ("sw-fastedit-phantom", "dins-phantom")


def random_weights(name: str, options: dict[str, str], path: Path, seed: int) -> Path:
    """A weight file of a randomly initialised network of the configuration."""
    import torch

    torch.manual_seed(seed)
    if name == "sw-fastedit":
        from nfbench.models.sw_fastedit import build_network

        torch.save({"net": build_network([int(f) for f in options["filters"].split(",")]).state_dict()}, path)
    else:
        from nfbench.models.dins import build_network

        torch.save(build_network(int(options["base_filters"]), int(options["max_filters"])).state_dict(), path)
    return path


def plan_clicks(label: np.ndarray, affine: np.ndarray, n_lesions: int, n_clicks: int,
                spacing: tuple[float, float, float], rng: np.random.Generator) -> list[list[tuple[tuple[int, ...], bool]]]:
    """Per lesion (largest first), its clicks ``(ijk, positive)``: the centre, then shell (−) and lesion (+) voxels."""
    plans = []
    for lesion in lesion_table(label, affine=affine)[:n_lesions]:
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in lesion.bbox)
        inside = label[box] == lesion.lesion_id
        shell = ndimage.binary_dilation(inside) & (label[box] == 0)
        voxels = np.argwhere(inside)
        origin = np.array([s.start for s in box])
        centre = np.asarray(lesion.centroid_ijk) - origin
        clicks = [(voxels[np.argmin((((voxels - centre) * spacing) ** 2).sum(1))], True)]
        for k in range(1, n_clicks):
            pool = np.argwhere(shell) if k % 2 else voxels
            clicks.append((pool[rng.integers(len(pool))], k % 2 == 0))
        plans.append([(tuple(int(v) for v in ijk + origin), positive) for ijk, positive in clicks])
    return plans


def peak_mb() -> float:
    """This process's peak resident memory so far (Linux ``VmHWM``).

    Not ``ru_maxrss``: a child started by ``subprocess`` (vfork + exec) inherits its parent's peak
    there, so it would report the phantom's generation as the model's memory.
    """
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024.0


def time_network(model: object) -> list[float]:
    """Wrap the model's network call (``forward`` of SW-FastEdit, ``logits`` of DINs); returns its running total (s)."""
    total = [0.0]
    name = "forward" if hasattr(model, "forward") else "logits"
    call = getattr(model, name)

    def timed(*args: object) -> object:
        tick = time.perf_counter()
        out = call(*args)
        total[0] += time.perf_counter() - tick
        return out

    setattr(model, name, timed)
    return total


def measure(spec: ModelSpec, image_path: Path, plans: list, n_full: int, threads: int) -> dict:
    """One model's figures on one case (run in a fresh process)."""
    import torch

    torch.set_num_threads(threads)
    model = load_spec(spec)
    network = time_network(model)
    image = load_volume(image_path, dtype=np.float32)
    before_start = peak_mb()
    tick = time.perf_counter()
    session = model.start(image)
    start_s, start_network_s = time.perf_counter() - tick, network[0]
    n_windows = len(session.cache.boxes)
    assert session.windows_run == n_windows, "start runs every window once"
    incremental: list[tuple[float, int, float]] = []  # latency (ms), windows run, of which network (ms)
    answers = []
    for clicks in plans:
        session.reset()
        for ijk, positive in clicks:
            ran, net = session.windows_run, network[0]
            tick = time.perf_counter()
            session.add_click(Click(ijk, positive))
            answer = session.predict()
            incremental.append(((time.perf_counter() - tick) * 1000.0, session.windows_run - ran,
                                (network[0] - net) * 1000.0))
            answers.append(answer)
            print(f"  {spec.name}: interaction {len(incremental)}: {incremental[-1][0]:.0f} ms, "
                  f"{incremental[-1][1]} windows, network {incremental[-1][2]:.0f} ms", file=sys.stderr)
    incremental_peak = peak_mb()
    full: list[tuple[float, int, float]] = []
    for clicks in plans:
        if len(full) >= n_full:
            break
        session.reset()
        for ijk, positive in clicks[:n_full - len(full)]:
            ran, net = session.windows_run, network[0]
            tick = time.perf_counter()
            session.add_click(Click(ijk, positive))
            session.cache.answers = [None] * n_windows  # every window runs again, the whole grid is re-blended
            answer = session.predict()
            elapsed = (time.perf_counter() - tick) * 1000.0
            same = answers[len(full)]
            assert answer.box == same.box and np.array_equal(answer.mask, same.mask), "full pass != incremental"
            full.append((elapsed, session.windows_run - ran, (network[0] - net) * 1000.0))
            print(f"  {spec.name}: full pass {len(full)}: {elapsed:.0f} ms, {full[-1][1]} windows", file=sys.stderr)
    return {"name": spec.name, "options": dict(spec.options), "grid": list(session.cache.shape),
            "window": list(session.cache.patch_size), "n_windows": n_windows, "start_s": start_s,
            "start_network_s": start_network_s,
            "incremental": incremental, "full": full, "peak_before_start_mb": before_start,
            "peak_incremental_mb": incremental_peak, "peak_mb": peak_mb(), "threads": threads}


def p90(values: list[float]) -> float:
    return float(np.quantile(values, 0.9))


def _cells(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} / {float(np.quantile(values, 0.9)):.0f}"


def table(results: list[dict]) -> str:
    """Two Markdown tables: per interaction (windows, latency) and per case (start, memory)."""
    lines = [("| model | grid (model voxels) | window | windows, full pass | windows per interaction, incremental: "
              "mean (range) | fewer | latency incremental, median / p90 (ms) | of which network, median (ms) "
              "| latency full pass, median / p90 (ms) | lower (medians) |"),
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        inc_ms, inc_win, inc_net = zip(*r["incremental"])
        full_ms, full_win, _ = zip(*r["full"]) if r["full"] else ((), (), ())
        assert all(w == r["n_windows"] for w in full_win)
        full_cell, lower = "–", "–"
        if full_ms:
            full_cell = f"{_cells(full_ms)} (n = {len(full_ms)})"
            lower = f"{statistics.median(full_ms) / statistics.median(inc_ms):.1f}×"
        lines.append(
            f"| {_label(r)} | {' × '.join(map(str, r['grid']))} | {' × '.join(map(str, r['window']))} "
            f"| {r['n_windows']} | {statistics.mean(inc_win):.1f} ({min(inc_win)}–{max(inc_win)}) "
            f"| {r['n_windows'] / statistics.mean(inc_win):.0f}× | {_cells(inc_ms)} (n = {len(inc_ms)}) "
            f"| {statistics.median(inc_net):.0f} | {full_cell} | {lower} |")
    lines += ["", ("| model | start: the no-click cache (s) | network per window (s) "
                   "| peak RSS (MB): model + image loaded / after start and the incremental interactions "
                   "/ after the full passes too |"), "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {_label(r)} | {r['start_s']:.1f} | {r['start_network_s'] / r['n_windows']:.2f} "
                     f"| {r['peak_before_start_mb']:.0f} / {r['peak_incremental_mb']:.0f} / {r['peak_mb']:.0f} |")
    return "\n".join(lines)


def _label(result: dict) -> str:
    options = ", ".join(f"{k}={v}" for k, v in result["options"].items())
    return f"`{result['name']}` ({options})" if options else f"`{result['name']}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=5, help="largest lesions prompted (default 5)")
    parser.add_argument("--clicks", type=int, default=3, help="interactions (one click each) per lesion (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="phantom, clicks and random weights (default 0)")
    parser.add_argument("--models", nargs="+", default=[*RANDOM, *SHIPPED], choices=[*RANDOM, *SHIPPED])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--full", type=int, default=2, help="interactions replayed as full passes (default 2)")
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"], help="phantom size (default full)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="change one option of a configuration (e.g. sw-fastedit:spacing=2.5,2.5,7.8)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a JSON job file: one model, run in this process
    args = parser.parse_args()

    if args.worker:
        job = json.loads(Path(args.worker).read_text())
        spec = ModelSpec(job["name"], weights=job["weights"], options=job["options"], device="cpu")
        result = measure(spec, Path(job["image"]), job["plans"], job["full"], job["threads"])
        Path(job["out"]).write_text(json.dumps(result))
        return

    configs = {name: dict(RANDOM.get(name, {})) for name in args.models}
    for text in args.option:
        name, _, setting = text.partition(":")
        key, value = parse_option(setting)
        if name not in configs:
            parser.error(f"--option {text!r}: model {name!r} is not among --models")
        configs[name][key] = value

    tick = time.perf_counter()
    case = make_case(size=args.size, burden="low", rng=args.seed)
    plans = plan_clicks(case.label, case.affine, args.lesions, args.clicks, case.spacing, np.random.default_rng(args.seed))
    print(f"phantom: shape {case.image.shape}, {case.n_lesions} lesions, {len(plans)} prompted, "
          f"{time.perf_counter() - tick:.1f} s", file=sys.stderr)
    registered = {info.name for info in available_models()}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        image = save_volume(case.volumes()[0], Path(tmp) / "image.nii")
        del case
        for name in args.models:
            if name not in registered:
                print(f"{name}: not registered here, skipped", file=sys.stderr)
                continue
            options = configs[name]
            weights = str(random_weights(name, options, Path(tmp) / f"{name}.pt", args.seed)) if name in RANDOM else None
            job = Path(tmp) / f"{name}.json"
            out = Path(tmp) / f"{name}.out.json"
            job.write_text(json.dumps({"name": name, "weights": weights, "options": options, "image": str(image),
                                       "plans": plans, "full": args.full, "threads": args.threads, "out": str(out)}))
            tick = time.perf_counter()
            # A fresh process per model, so that its peak memory is its own.
            subprocess.run([sys.executable, __file__, "--worker", str(job)], check=True)
            print(f"{name}: {time.perf_counter() - tick:.0f} s in all", file=sys.stderr)
            results.append(json.loads(out.read_text()))

    print(f"\nMachine: {platform.processor() or platform.machine()}, {platform.platform()}, CPU only, "
          f"torch threads {args.threads}; {args.lesions} lesions × {args.clicks} interactions, seed {args.seed}")
    print(table(results))


if __name__ == "__main__":
    main()

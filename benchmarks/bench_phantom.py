"""Phantom realism (issue 8): contrast-to-noise, bright mimics, generation budgets, pictures.

Prints a Markdown block for ``benchmarks/RESULTS.md`` and writes ``benchmarks/phantom_{size}_{burden}.png``
(a coronal mid-slice and a maximum-intensity projection of one case per burden)::

    PYTHONPATH=src python benchmarks/bench_phantom.py [--difficulty realistic] [--no-full] [--no-pictures]

Measured on the test cases of a ``small`` dataset as ``write_phantom_dataset`` makes them (seed 0,
``--test-cases`` of each burden):

- lesion CNR: (mean lesion − mean of a 2-voxel shell outside every lesion) / noise σ, per lesion;
- not-lesion share: of the voxels at or above the lesions' 25th intensity percentile, the share
  that is not lesion (the bright mimics a model must reject);
- generation time and peak memory of one case per size (a fresh process each, so peaks do not mix).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from nfbench.phantom import make_case
from nfbench.phantom.difficulty import DIFFICULTIES

HERE = Path(__file__).resolve().parent


def lesion_cnr(image: np.ndarray, label: np.ndarray, sigma: float) -> np.ndarray:
    """Per-lesion (mean lesion − mean 2-voxel shell outside all lesions) / σ, in lesion boxes."""
    out = []
    for lesion_id, box in enumerate(ndimage.find_objects(label), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
        lesion = label[box] == lesion_id
        shell = ndimage.binary_dilation(lesion, iterations=2) & (label[box] == 0)
        if shell.any():
            values = image[box]
            out.append((values[lesion].mean() - values[shell].mean()) / sigma)
    return np.asarray(out)


def not_lesion_share(image: np.ndarray, label: np.ndarray) -> float:
    """Share of the voxels at or above the lesions' 25th intensity percentile that are not lesion."""
    threshold = np.percentile(image[label > 0], 25)
    bright = image >= threshold
    return float(1.0 - np.count_nonzero(bright & (label > 0)) / np.count_nonzero(bright))


def _test_cases(n: int, difficulty: str) -> list[tuple[str, object]]:
    """The test cases of ``write_phantom_dataset(seed=0, cases=4, test_cases=n)``, in memory."""
    from nfbench.phantom.dataset import plan_dataset

    plan_seq, *seqs = np.random.SeedSequence(0).spawn(1 + 4 + 2 * n)
    entries = plan_dataset(cases=4, test_cases=n, burden="low", rng=np.random.default_rng(plan_seq))
    return [
        (e.burden, make_case(size="small", burden=e.burden, rng=np.random.default_rng(s), difficulty=difficulty))
        for e, s in zip(entries, seqs) if e.subset != "Tr"
    ]


def _timed(size: str, burden: str, difficulty: str) -> dict:
    """Generation time and peak RSS of one case, in a fresh process."""
    code = (
        "import time, resource, json; from nfbench.phantom import make_case; t = time.perf_counter(); "
        f"make_case(size={size!r}, burden={burden!r}, rng=0, difficulty={difficulty!r}); "
        "print(json.dumps({'s': time.perf_counter() - t, "
        "'gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def picture(size: str, burden: str, difficulty: str, seed: int, path: Path, dpi: int = 90) -> None:
    """Coronal mid-slice and maximum-intensity projection of one case, head up, true aspect.

    Saved as 8-bit grey with 64 levels: noise does not compress, and this keeps a file < 300 KB.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    case = make_case(size=size, burden=burden, rng=seed, difficulty=difficulty)
    sx, _, sz = case.spacing
    mid = case.image.shape[1] // 2
    views = [(case.image[:, mid, :], f"coronal slice {mid}"), (case.image.max(axis=1), "maximum projection (A-P)")]
    vmax = float(np.percentile(case.image[case.image > 0], 99.7))
    height = 9.0
    width = height * (case.image.shape[0] * sx) / (case.image.shape[2] * sz)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 0.4, height + 0.5), dpi=dpi)
    for ax, (view, title) in zip(axes, views):
        # Rows = superior→inferior (head up), columns = patient right on the viewer's left (radiological).
        ax.imshow(view.T[::-1, ::-1], cmap="gray", vmin=0, vmax=vmax, aspect=sz / sx, interpolation="antialiased")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{difficulty} phantom, {size}, {burden} burden ({case.n_lesions} lesions), seed {seed}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.canvas.draw()
    grey = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("L").point(lambda v: v // 4 * 4)
    plt.close(fig)
    grey.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--difficulty", default="realistic", choices=list(DIFFICULTIES))
    parser.add_argument("--test-cases", type=int, default=3)
    parser.add_argument("--no-full", action="store_true", help="Skip the full size (time and pictures).")
    parser.add_argument("--no-pictures", action="store_true")
    args = parser.parse_args()
    sigma = DIFFICULTIES[args.difficulty].noise_sigma

    rows, cnrs = [], []
    for burden, case in _test_cases(args.test_cases, args.difficulty):
        cnr = lesion_cnr(case.image, case.label, sigma)
        cnrs.append(np.median(cnr))
        volumes = np.bincount(case.label.ravel())[1:] * np.prod(case.spacing) / 1000
        rows.append(f"| {burden} | {case.n_lesions} | {np.median(cnr):.2f} | {np.percentile(cnr, 10):.2f}–"
                    f"{np.percentile(cnr, 90):.2f} | {not_lesion_share(case.image, case.label):.2f} | "
                    f"{(volumes > 1).sum()} | {volumes.sum():.1f} |")
    sizes = ["tiny", "small"] + ([] if args.no_full else ["full"])
    budget = [(s, b, _timed(s, b, args.difficulty)) for s in sizes for b in ("low", "high")]

    print(f"`PYTHONPATH=src python benchmarks/bench_phantom.py --difficulty {args.difficulty}`, "
          f"{datetime.date.today().isoformat()}, small test cases of seed 0 (noise σ = {sigma:g})\n")
    print("| burden | lesions | median CNR (σ) | CNR 10–90 % | not-lesion share ≥ p25 | lesions > 1 ml | lesion ml |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nmedian over test cases of the per-case median CNR: **{np.median(cnrs):.2f} σ**\n")
    print("| size | burden | generation s | peak RSS GiB |")
    print("|---|---|---:|---:|")
    for size, burden, m in budget:
        print(f"| {size} | {burden} | {m['s']:.2f} | {m['gib']:.2f} |")
    if not args.no_pictures:
        names = []
        for size in sizes[1:]:
            for burden, seed in (("low", 1), ("high", 2)):
                path = HERE / f"phantom_{size}_{burden}.png"
                picture(size, burden, args.difficulty, seed, path, dpi=90 if size == "small" else 120)
                names.append(f"{path.name} ({path.stat().st_size // 1024} KB)")
        print("\npictures: " + ", ".join(names))


if __name__ == "__main__":
    main()

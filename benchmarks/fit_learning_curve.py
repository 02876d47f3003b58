"""How much more would longer training give? A saturating fit to a run's validation Dice.

Reads the ``metrics.csv`` that ``nfbench train`` writes, takes the epochs with a validation figure
(``val_dice_last``: lesion Dice after the last validation interaction) against the training
minutes, fits d(t) = a - b * t**(-c), and prints the fit and its extrapolation.

    python benchmarks/fit_learning_curve.py /work/train/swc/metrics.csv --at 60 120 240
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit


def saturating(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * t ** (-c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", help="a training run's metrics.csv")
    parser.add_argument("--column", default="val_dice_last")
    parser.add_argument("--at", type=float, nargs="+", default=[60, 120, 240], help="minutes to extrapolate to")
    args = parser.parse_args()
    table = pd.read_csv(args.metrics)
    if args.column not in table or "seconds" not in table:
        raise SystemExit(f"{args.metrics}: needs columns 'seconds' and {args.column!r}")
    points = table.dropna(subset=[args.column])
    if len(points) < 4:  # three parameters: three points would fit any curve exactly
        raise SystemExit(f"{args.metrics}: {len(points)} validation points; the fit needs at least 4")
    minutes, dice = points.seconds.to_numpy() / 60, points[args.column].to_numpy()
    (a, b, c), _ = curve_fit(saturating, minutes, dice, p0=(dice.max() + 0.05, 1.0, 1.0), maxfev=20000)
    for t, d in zip(minutes, dice):
        print(f"{t:7.1f} min  {args.column} {d:.3f}  fit {saturating(t, a, b, c):.3f}")
    print(f"fit: a = {a:.3f} (the plateau), b = {b:.2f}, c = {c:.2f}")
    for t in args.at:
        print(f"extrapolated at {t:g} min: {saturating(t, a, b, c):.3f}")


if __name__ == "__main__":
    main()

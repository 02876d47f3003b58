"""The baselines on a real brain MRI with dark and bright targets (issue 8).

Run: ``python benchmarks/bench_real_mri.py [--step 2]`` (needs nilearn, which ships the MNI152
template in its wheel; see ``tests/models/real_mri.py`` for the image and its targets).

Simulates ``lesion-corrective`` with 3 interactions for each baseline on the T1 template (the
CSF spaces are dark) and on the same image contrast-inverted (bright), and prints a Markdown table
of the mean lesion Dice after 3 interactions and the median model latency per interaction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.models

from tests.models.real_mri import dice_after, mni_case  # noqa: E402

MODELS = ("sphere", "region-grow", "random-walker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=2, help="block-average the 1 mm template to this many mm")
    args = parser.parse_args()
    print(f"MNI152 2009 T1 template (nilearn), {args.step} mm, lesion-corrective, 3 interactions\n")
    print("| model | targets | lesions | lesion Dice after 3 | latency median (ms) |")
    print("|---|---|---|---|---|")
    for inverted, polarity in ((False, "dark (T1 CSF)"), (True, "bright (inverted)")):
        volume, instances, lesions = mni_case(args.step, inverted=inverted)
        for model in MODELS:
            score, latency = dice_after(model, volume, instances, lesions)
            print(f"| {model} | {polarity} | {len(lesions)} | {score:.3f} | {latency:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""The baselines beat the sphere floor on a real brain MRI, with dark and with bright targets (issue 8).

The image is nilearn's packaged MNI152 T1 template and the targets its deep CSF spaces, derived
from the template's tissue maps (``tests/models/real_mri.py``): dark in T1, bright once the image
is contrast-inverted. The engine simulates ``lesion-corrective`` with 3 interactions.
"""

from __future__ import annotations

import pytest
from scipy import ndimage

from tests.models.real_mri import dice_after, mni_case

pytest.importorskip("nilearn")

CLASSICAL = ("region-grow", "random-walker")


def _check(step: int, inverted: bool) -> None:
    volume, instances, lesions = mni_case(step, inverted=inverted)
    assert len(lesions) >= 3
    floor, _ = dice_after("sphere", volume, instances, lesions)
    scores = {name: dice_after(name, volume, instances, lesions)[0] for name in CLASSICAL}
    # Measured (dark and bright alike): sphere 0.258, region-grow 0.498, random-walker 0.496 at 2 mm;
    # 0.352, 0.630, 0.483 at 1 mm. Before issue 8, at 2 mm: region-grow 0.005 dark, 0.341 bright,
    # random-walker 0.019 dark, 0.294 bright.
    for name, score in scores.items():
        assert score > floor + 0.1, (name, score, floor, "inverted" if inverted else "T1")


def test_targets_are_dark_in_t1_and_bright_inverted():
    for inverted, darker in ((False, True), (True, False)):
        volume, instances, _ = mni_case(2, inverted=inverted)
        targets = instances > 0
        shell = ndimage.binary_dilation(targets, iterations=2) & ~targets
        inside, around = volume.data[targets].mean(), volume.data[shell].mean()
        assert (inside < around) == darker, (inverted, inside, around)


@pytest.mark.parametrize("inverted", [False, True], ids=["dark-T1", "bright-inverted"])
def test_baselines_beat_the_sphere_on_real_mri(inverted):
    _check(2, inverted)


@pytest.mark.slow
@pytest.mark.parametrize("inverted", [False, True], ids=["dark-T1", "bright-inverted"])
def test_baselines_beat_the_sphere_on_real_mri_at_1mm(inverted):
    _check(1, inverted)

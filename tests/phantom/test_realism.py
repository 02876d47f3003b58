"""The realistic phantom against the targets of issue 8: contrast-to-noise, mimics, partial volume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.phantom import make_case
from nfbench.phantom.difficulty import DIFFICULTIES, Difficulty


def _median_cnr(case, sigma: float) -> float:
    """Median over lesions of (mean lesion − mean of the 2-voxel shell outside all lesions) / σ."""
    values = []
    for lesion_id, box in enumerate(ndimage.find_objects(case.label), start=1):
        box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
        lesion = case.label[box] == lesion_id
        shell = ndimage.binary_dilation(lesion, iterations=2) & (case.label[box] == 0)
        if shell.any():
            image = case.image[box]
            values.append((image[lesion].mean() - image[shell].mean()) / sigma)
    return float(np.median(values))


def _not_lesion_share(case) -> float:
    bright = case.image >= np.percentile(case.image[case.label > 0], 25)
    return 1.0 - np.count_nonzero(bright & (case.label > 0)) / np.count_nonzero(bright)


@pytest.fixture(scope="module")
def small_cases():
    return [make_case(size="small", burden=b, rng=seed) for b, seed in (("low", 1), ("high", 2))]


def test_realistic_lesion_contrast_is_a_few_noise_sigma(small_cases):
    sigma = DIFFICULTIES["realistic"].noise_sigma
    medians = [_median_cnr(case, sigma) for case in small_cases]
    assert all(2.0 <= m <= 6.0 for m in medians), medians


def test_easy_contrast_is_far_higher_than_realistic():
    easy = make_case(size="small", burden="low", rng=1, difficulty="easy")
    assert _median_cnr(easy, DIFFICULTIES["easy"].noise_sigma) > 15.0


def test_most_voxels_as_bright_as_lesions_are_not_lesion(small_cases):
    # The bright mimics (CSF, nodes, veins, bowel, kidneys, spleen, joints, glands) outnumber lesions.
    for case in small_cases:
        assert _not_lesion_share(case) >= 0.5


def test_a_low_burden_case_has_lesions_of_realistic_size(small_cases):
    low = small_cases[0]
    volumes_ml = np.bincount(low.label.ravel())[1:] * np.prod(low.spacing) / 1000
    assert low.n_lesions <= 15 and (volumes_ml > 1.0).any()


def _next_slice_mean(case) -> float:
    """Mean intensity of the non-lesion voxels one coronal slice in front of or behind a lesion."""
    lesion = case.label > 0
    beside = ndimage.binary_dilation(lesion, structure=np.ones((1, 3, 1), bool)) & ~lesion
    return float(case.image[beside].mean())


def test_partial_volume_spreads_lesions_into_the_next_slices():
    # The same lesions rendered at the thick spacing and from 3 sub-slices per slice (all other
    # knots of easy unchanged): averaging spills part of each lesion into its neighbouring slices.
    easy = DIFFICULTIES["easy"]
    averaged = Difficulty(**{**easy.__dict__, "name": "easy + partial volume", "slice_oversample": 3})
    sharp = make_case(size="small", burden="low", rng=5, difficulty=easy)
    blurred = make_case(size="small", burden="low", rng=5, difficulty=averaged)
    assert blurred.n_lesions == sharp.n_lesions
    assert _next_slice_mean(blurred) > _next_slice_mean(sharp) + 40.0


@pytest.mark.parametrize("difficulty", ["realistic", "hard"])
def test_same_seed_same_arrays(difficulty):
    a = make_case(size="tiny", burden="high", rng=4, difficulty=difficulty)
    b = make_case(size="tiny", burden="high", rng=np.random.default_rng(4), difficulty=difficulty)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.kinds == b.kinds and len(a.kinds) == int(a.label.max())


def test_unknown_difficulty_is_refused():
    with pytest.raises(ValueError, match="unknown phantom difficulty 'medium'"):
        make_case(size="tiny", difficulty="medium")


def test_cli_difficulty_is_recorded(tmp_path):
    out = tmp_path / "ds"
    args = ["data", "phantom", str(out), "--size", "tiny", "--cases", "1", "--test-cases", "0",
            "--difficulty", "easy", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["difficulty"] == "easy" and meta["noise_sigma"] == DIFFICULTIES["easy"].noise_sigma

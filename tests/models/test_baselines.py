"""Properties every built-in model keeps, and the quality order a reviewer expects."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.bbox import mask_bbox, pad_bbox, union_bbox
from nfbench.interaction.policies import next_clicks
from nfbench.lesions import instance_map, lesion_table
from nfbench.metrics.overlap import dice
from nfbench.models.registry import available_models, load_model
from nfbench.phantom import make_case
from nfbench.types import Click

BUILTIN = [m.name for m in available_models() if m.target.startswith("nfbench.models.")]


@pytest.fixture(scope="module")
def small_case():
    phantom = make_case(size="small", burden="low", rng=21)
    image, label = phantom.volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    return image, instances, lesion_table(instances, affine=image.affine)


def _centre(instances, lesion, spacing):
    box = pad_bbox(lesion.bbox, 1, instances.shape)
    truth = instances[box] == lesion.lesion_id
    click = next_clicks(np.zeros_like(truth), truth, spacing=spacing, rng=np.random.default_rng(0))[0]
    return Click(tuple(s.start + v for s, v in zip(box, click.ijk)), True)


@pytest.mark.parametrize("name", BUILTIN)
def test_contract(name, small_case):
    image, instances, lesions = small_case
    session = load_model(name).start(image)
    empty = session.predict()
    assert empty.dtype == np.bool_ and empty.shape == image.shape and not empty.any()
    click = _centre(instances, lesions[0], image.spacing)
    session.add_click(click)
    first = session.predict()
    assert first.dtype == np.bool_ and first.shape == image.shape and first[click.ijk]
    again = load_model(name).start(image)
    again.add_click(click)
    np.testing.assert_array_equal(again.predict(), first)  # deterministic
    session.add_click(Click(click.ijk, False))
    assert not session.predict()[click.ijk]  # a negative click on the only voxel clicked removes it
    session.reset()
    assert not session.predict().any()
    with pytest.raises(NotImplementedError, match="clicks only"):
        session.add_box(None)


def _lesion_dice_after(model_name, image, instances, lesions, n_interactions=3):
    """Mean lesion Dice after ``n_interactions`` centre-of-error clicks on each lesion."""
    session = load_model(model_name).start(image)
    rng = np.random.default_rng(0)
    scores = []
    for lesion in lesions:
        session.reset()
        pred = np.zeros(image.shape, bool)
        for _ in range(n_interactions):
            scope = pad_bbox(union_bbox(lesion.bbox, mask_bbox(pred)), 1, image.shape)
            truth = instances[scope] == lesion.lesion_id
            ignore = (instances[scope] > 0) & ~truth
            clicks = next_clicks(pred[scope], truth, spacing=image.spacing, rng=rng, ignore=ignore)
            if not clicks:
                break
            session.add_click(Click(tuple(s.start + v for s, v in zip(scope, clicks[0].ijk)), clicks[0].positive))
            pred = session.predict()
        scope = pad_bbox(union_bbox(lesion.bbox, mask_bbox(pred)), 1, image.shape)
        truth = instances[scope] == lesion.lesion_id
        scores.append(dice(pred[scope], truth, ignore=(instances[scope] > 0) & ~truth))
    return float(np.mean(scores))


def test_classical_baselines_beat_the_sphere(small_case):
    image, instances, lesions = small_case
    scores = {name: _lesion_dice_after(name, image, instances, lesions[:10]) for name in ("sphere", "region-grow", "random-walker")}
    assert scores["region-grow"] > scores["sphere"] + 0.15, scores
    assert scores["random-walker"] > scores["sphere"] + 0.1, scores

"""The shipped phantom-trained CNNs: packaged, documented by their cards, and better than the baselines.

The quality test uses a small realistic phantom case drawn from a seed that no training case came
from (the training data were made with seed 11, the demo's with 2025).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.lesions import instance_map, lesion_table
from nfbench.models.phantom_models import card, weights_file
from nfbench.models.registry import available_models, load_model
from nfbench.models.spec import file_identity
from nfbench.phantom import PHANTOM_VERSION, make_case
from tests.engine import run

pytest.importorskip("torch")
pytest.importorskip("monai")

PHANTOM_MODELS = ("sw-fastedit-phantom", "dins-phantom")


@pytest.mark.parametrize("name", PHANTOM_MODELS)
def test_weights_ship_with_a_card_that_says_how_they_were_made(name):
    info = {m.name: m for m in available_models()}[name]
    assert info.available and not info.needs_weights, info.missing
    path = weights_file(name)
    assert path.stat().st_size <= 10 * 1024 * 1024
    about = card(name)
    assert about["weights"]["sha256"] == file_identity(path)["sha256"]
    assert about["command"].startswith("nfbench train ") and f"--seed {about['seed']}" in about["command"]
    # trained on the current phantom: a new phantom version needs new weights (see the module doc)
    assert about["data"]["phantom_version"] == PHANTOM_VERSION and about["data"]["difficulty"] == "realistic"
    assert about["validation"]["dice_lesion_last"] >= 0.7
    train, val = about["cases"]["train"], about["cases"]["val"]  # which phantom cases it saw, by name
    assert train and val and not set(train) & set(val)
    assert json.dumps(about)  # plain JSON, as written


@pytest.mark.parametrize("name", PHANTOM_MODELS)
def test_the_weights_fix_the_network_and_only_safe_options_remain(name):
    from nfbench.models.base import ModelError
    from nfbench.models.spec import ModelSpec
    from nfbench.models.registry import load_spec

    with pytest.raises(ModelError, match="has no option 'spacing'"):
        load_spec(ModelSpec(name, options={"spacing": "1,1,1"}))
    with pytest.raises(ModelError, match="takes no weights"):
        load_spec(ModelSpec(name, weights=weights_file(name)))
    assert load_model(name, keep_clicked=False).keep_clicked is False
    default = load_model(name)
    assert default.keep_clicked and default.honour_clicks  # on unless switched off
    assert load_model(name, honour_clicks=False).honour_clicks is False


@pytest.fixture(scope="module")
def unseen_case():
    image, label = make_case(size="small", burden="low", rng=4242, n_lesions=5).volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    return image, instances, lesion_table(instances, affine=image.affine)


@pytest.mark.slow
@pytest.mark.parametrize("name", PHANTOM_MODELS)
def test_phantom_models_beat_region_growing_on_an_unseen_case(name, unseen_case):
    scenario = scenario_from_options("lesion-corrective", lesions=5)
    dice = {}
    for model_name in (name, "region-grow"):
        result = run(load_model(model_name), scenario, *unseen_case)
        rows = [r for r in result.interactions if r.interaction == 3]
        dice[model_name] = float(np.mean([r.dice_lesion for r in rows]))
    assert dice[name] >= 0.7 and dice[name] > dice["region-grow"], dice

"""`simpleclick-stcn`: the original's weight folder, the session (SimpleClick per clicked frame, STCN to
the rest), and the phantom-trained pair against the baselines on a case no training case came from."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from nfbench.interaction.scenarios import scenario_from_options  # noqa: E402
from nfbench.lesions import instance_map, lesion_table  # noqa: E402
from nfbench.models.base import ModelError  # noqa: E402
from nfbench.models.blocks.frames import FrameStack  # noqa: E402
from nfbench.models.registry import available_models, load_model, load_spec  # noqa: E402
from nfbench.models.simpleclick import SimpleClickConfig, build_network, save_weights  # noqa: E402
from nfbench.models.simpleclick_stcn import WEIGHT_FILES  # noqa: E402
from nfbench.models.spec import ModelSpec  # noqa: E402
from nfbench.models.stcn import build_network as build_stcn  # noqa: E402
from nfbench.phantom import make_case  # noqa: E402
from nfbench.types import Click  # noqa: E402
from tests.engine import run, tiny_case  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = SimpleClickConfig(image_size=64, patch_size=16, embed_dim=32, depth=4, heads=2, neck=(8, 16, 32, 64),
                         head_channels=16)


@pytest.fixture(scope="module")
def weight_folder(tmp_path_factory):
    """The original's folder layout: SimpleClick in isegm's format (its config inside), STCN as a plain state dict."""
    folder = tmp_path_factory.mktemp("simpleclick_stcn")
    torch.manual_seed(0)
    save_weights(build_network(TINY), folder / WEIGHT_FILES[0])
    torch.save(build_stcn("reduced").state_dict(), folder / WEIGHT_FILES[1])
    return folder


def _click_in(instances, lesion) -> Click:
    """A positive click on the lesion's voxel nearest its centroid."""
    voxels = np.argwhere(instances == lesion.lesion_id)
    nearest = voxels[np.argmin(((voxels - np.asarray(lesion.centroid_ijk)) ** 2).sum(axis=1))]
    return Click(tuple(int(v) for v in nearest), True)


def _mask_after(model, image, clicks, session=None):
    session = session or model.start(image)
    for click in clicks:
        session.add_click(click)
    answer = session.predict()
    whole = np.zeros(image.shape, bool)
    whole[answer.box] = answer.mask
    return session, whole


def test_the_weight_folder_loads_and_answers_deterministically(weight_folder):
    image, instances, lesions = tiny_case(2)
    model = load_spec(ModelSpec("simpleclick-stcn", weights=weight_folder, options={"stcn_config": "reduced"}))
    click = _click_in(instances, lesions[0])
    first = _mask_after(model, image, [click])[1]
    again = _mask_after(model, image, [click])[1]
    np.testing.assert_array_equal(first, again)
    assert model.start(image).predict().mask.sum() == 0  # no click, no object


def test_stcn_weights_of_another_configuration_are_refused_with_the_file_named(weight_folder):
    with pytest.raises(ModelError, match=WEIGHT_FILES[1]):
        load_spec(ModelSpec("simpleclick-stcn", weights=weight_folder))  # stcn_config=original


def test_a_folder_without_the_checkpoints_is_reported_missing(tmp_path):
    info = {m.name: m for m in available_models()}["simpleclick-stcn"]
    assert info.needs_weights
    with pytest.raises(ModelError, match=WEIGHT_FILES[0]):
        load_spec(ModelSpec("simpleclick-stcn", weights=tmp_path))


def test_boxes_are_refused(weight_folder):
    image, _, _ = tiny_case(1)
    session = load_model("simpleclick-stcn", weights=weight_folder, stcn_config="reduced").start(image)
    with pytest.raises(ModelError, match="clicks only"):
        session.add_box(None)


@pytest.fixture(scope="module")
def unseen_case():
    """Small realistic phantom from a seed no training case came from (training: 11, demo: 2025)."""
    image, label = make_case(size="small", burden="low", rng=4242, n_lesions=5).volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    return image, instances, lesion_table(instances, affine=image.affine)


def test_the_phantom_pair_follows_a_clicked_lesion_through_its_frames_on_an_unseen_case(unseen_case):
    image, instances, lesions = unseen_case
    model = load_model("simpleclick-stcn-phantom")
    lesion = max(lesions, key=lambda item: item.n_voxels)
    truth = instances == lesion.lesion_id
    session, mask = _mask_after(model, image, [_click_in(instances, lesion)])
    stack = FrameStack.of(image.shape, image.spacing)
    frames_of = lambda volume: {n for n in range(stack.n_frames) if stack.frame(volume, n).any()}  # noqa: E731
    assert len(session.clicked) == 1 and len(frames_of(truth)) > 1
    assert len(frames_of(mask) & frames_of(truth)) > 1  # STCN carried the clicked frame's mask on
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.3, dice  # 0.44: 0.83 on the clicked frame, STCN runs on past the lesion's far end


def test_clicks_outside_simpleclicks_crop_start_a_segment_of_their_own(unseen_case):
    image = unseen_case[0]
    model = load_model("simpleclick-stcn-phantom")
    assert model.clicker.crop == 64
    stack = FrameStack.of(image.shape, image.spacing)
    session = model.start(image)
    a = session.stack.pixel((10, 10, 10))
    session.add_click(Click(stack.voxel(a[0], 5, 5), True))
    session.add_click(Click(stack.voxel(a[0], 20, 30), False))
    session.add_click(Click(stack.voxel(a[0], 5 + 100, 5), True))
    assert [len(group) for group in session.segments[a[0]]] == [2, 1]


def test_the_phantom_pair_beats_the_sphere_after_one_click_on_an_unseen_case(unseen_case):
    scenario = scenario_from_options("lesion-corrective", lesions=5, interactions=2)
    dice = {}
    for name in ("simpleclick-stcn-phantom", "sphere"):
        rows = run(load_model(name), scenario, *unseen_case).interactions
        dice[name] = float(np.mean([r.dice_lesion for r in rows if r.interaction == 1]))
    assert dice["simpleclick-stcn-phantom"] > dice["sphere"] + 0.3, dice


@pytest.mark.parametrize("scenario", ["lesion-single", "lesion-corrective", "global-single", "global-corrective"])
def test_the_phantom_pair_runs_every_click_scenario(scenario):
    image, instances, lesions = tiny_case(2)
    options = {"interactions": 3} if scenario == "global-corrective" else {}
    result = run(load_model("simpleclick-stcn-phantom"), scenario_from_options(scenario, **options),
                 image, instances, lesions)
    assert result.interactions and all(0 <= r.dice_scan <= 1 for r in result.interactions)


def test_a_negative_click_on_a_frame_the_object_leaked_into_removes_what_it_hit(unseen_case):
    image, instances, lesions = unseen_case
    lesion = max(lesions, key=lambda item: item.n_voxels)
    session, mask = _mask_after(load_model("simpleclick-stcn-phantom"), image, [_click_in(instances, lesion)])
    stack, truth = session.stack, instances == lesion.lesion_id
    leaked = [n for n in range(stack.n_frames)
              if n not in session.clicked and (stack.frame(mask, n) & ~stack.frame(truth, n)).any()]
    frame = leaked[-1]
    before = session.masks[frame]
    row, column = np.argwhere(before)[0]
    session.add_click(Click(stack.voxel(frame, row, column), False))
    session.predict()
    components, _ = ndimage.label(before, structure=np.ones((3, 3), bool))
    np.testing.assert_array_equal(session.clicked[frame], before & (components != components[row, column]))
    assert not session.masks[frame][row, column]


def test_two_cases_open_at_once_do_not_share_simpleclicks_cached_frames(unseen_case):
    image, instances, lesions = unseen_case
    other = make_case(size="small", burden="low", rng=4243, n_lesions=5).volumes(image_dtype=np.float32)[0]
    assert other.shape == image.shape  # the same frames and crops: a cache keyed by frame would mix them
    model = load_model("simpleclick-stcn-phantom")
    click = _click_in(instances, max(lesions, key=lambda item: item.n_voxels))
    alone = _mask_after(model, image, [click])[1]
    first, second = model.start(other), model.start(image)
    first.add_click(click)
    first.predict()  # encodes the other case's frame of the click
    np.testing.assert_array_equal(_mask_after(model, image, [click], session=second)[1], alone)

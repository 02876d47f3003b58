"""SW-FastEdit: the original checkpoint format, the original preprocessing, and the geometry chain end to end."""

from __future__ import annotations

from dataclasses import asdict

import nibabel as nib
import numpy as np
import pytest

from nfbench.components import connected_components
from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, check_prediction
from nfbench.models.registry import load_spec, register_model, unregister_model
from nfbench.models.spec import ModelSpec
from nfbench.models.sw_fastedit import SWFastEditModel
from nfbench.types import Click
from tests.engine import run, tiny_case
from tests.models.answers import check_against_full_remap, two_balls

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.networks.nets import DynUNet  # noqa: E402

TINY = "4,4,4,4,4,4"
TIMING = {"latency_ms", "overhead_ms"}


def _dynunet(filters=None):
    """The network exactly as the original builds it (seed_spec §3.1), written out here independently."""
    return DynUNet(spatial_dims=3, in_channels=3, out_channels=2, kernel_size=[3] * 6,
                   strides=[1, 2, 2, 2, 2, [2, 2, 1]], upsample_kernel_size=[2, 2, 2, 2, [2, 2, 1]],
                   filters=filters, norm_name="instance", res_block=True, deep_supervision=False)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A random tiny network saved in the original format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("swf") / "tiny.pt"
    torch.save({"net": _dynunet([4] * 6).state_dict()}, path)
    return path


def _volume(data, spacing):
    affine = np.diag([*spacing, 1.0])
    return Volume(np.asarray(data, np.float32), affine, affine.copy(), nib.Nifti1Header())


def test_original_checkpoint_loads_strictly_and_a_renamed_key_is_named(tmp_path):
    torch.manual_seed(1)
    original = _dynunet()  # MONAI's default widths, as the original
    state = original.state_dict()
    path = tmp_path / "checkpoint.pt"
    torch.save({"net": state, "trainer": {"epoch": 151, "iteration": 3}}, path)
    model = SWFastEditModel(path)
    loaded = model.network.state_dict()
    assert sorted(loaded) == sorted(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())

    key = "input_block.conv1.conv.weight"
    assert key in state
    broken = dict(state)
    broken["renamed.weight"] = broken.pop(key)
    bad = tmp_path / "renamed.pt"
    torch.save({"net": broken}, bad)
    with pytest.raises(ModelError, match=rf"{key}.*renamed.weight") as info:
        SWFastEditModel(bad)
    assert str(bad) in str(info.value) and "sw-fastedit" in str(info.value)


def test_plain_state_dict_loads_and_wrong_widths_are_refused(tmp_path):
    torch.manual_seed(2)
    net = _dynunet([8, 16, 32, 64, 128, 256])
    path = tmp_path / "ours.pt"
    torch.save(net.state_dict(), path)
    model = SWFastEditModel(path, filters="8,16,32,64,128,256")
    assert all(torch.equal(model.network.state_dict()[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ModelError, match="shape mismatch") as info:
        SWFastEditModel(path, filters=TINY)
    assert str(path) in str(info.value)


def test_options_are_checked_and_requirements_name_the_weights(tmp_path, tiny_weights):
    with pytest.raises(ValueError, match="roi_size"):
        SWFastEditModel(tiny_weights, filters=TINY, roi_size="100,128,64")
    with pytest.raises(ValueError, match="deepest level"):
        SWFastEditModel(tiny_weights, filters=TINY, roi_size="32,32,16")
    with pytest.raises(ValueError, match="filters"):
        SWFastEditModel(tiny_weights, filters="4,4,4")
    assert SWFastEditModel.requirements(weights=tiny_weights) == []
    assert "does not exist" in SWFastEditModel.requirements(weights=tmp_path / "missing.pt")[0]
    register_model("swf-test", SWFastEditModel)
    try:
        spec = ModelSpec("swf-test", weights=tiny_weights, options={"filters": TINY, "overlap": "0.5"}, device="cpu")
        model = load_spec(spec)
        assert model.overlap == 0.5 and model.filters == (4,) * 6
    finally:
        unregister_model("swf-test")


def test_preprocessing_zscores_nonzero_voxels_and_places_balls_at_the_click(tiny_weights):
    rng = np.random.default_rng(0)
    data = np.zeros((40, 6, 30))
    data[5:35, 1:5, 4:26] = rng.normal(300.0, 40.0, (30, 4, 22))
    # native spacing = the model's, permuted: RSA is only a transpose here, no resampling
    image = _volume(data, (0.625, 7.8, 0.625))
    model = SWFastEditModel(tiny_weights, filters=TINY, roi_size="32,32,32")
    session = model.start(image)
    assert session.grid.shape == (40, 30, 6)
    inputs = session.inputs()
    assert inputs.shape[1:] == session.image.shape == (64, 32, 32)  # padded to multiples of 32
    model_image = inputs[0][session.model_box]
    inside = model_image != 0
    np.testing.assert_array_equal(inside, np.transpose(data, (0, 2, 1)) != 0)
    assert abs(model_image[inside].mean()) < 1e-4 and abs(model_image[inside].std() - 1) < 1e-4
    assert np.count_nonzero(inputs[0]) == np.count_nonzero(inside)  # the padding is 0

    session.add_click(Click((20, 3, 10), True))
    session.add_click(Click((8, 2, 25), False))
    channels = session.inputs()
    for channel, (i, j, k) in ((1, (20, 3, 10)), (2, (8, 2, 25))):
        ball = np.argwhere(channels[channel][session.model_box] > 0)
        assert len(ball) == 33 and set(np.unique(channels[channel])) == {0.0, 1.0}
        np.testing.assert_array_equal(ball.mean(axis=0), (i, k, j))  # RSA: (R, S, A) = (i, k, j)
    assert session.predict().mask.dtype == bool


def test_output_comes_back_on_the_native_grid(tiny_weights):
    image = _volume(np.ones((30, 5, 50)), (1.0, 6.0, 1.1))
    session = SWFastEditModel(tiny_weights, filters=TINY, roi_size="64,64,16").start(image)
    session.add_click(Click((10, 2, 20), True))
    answer = check_prediction("sw-fastedit", session.predict(), image.shape)
    assert all(s.stop <= n for s, n in zip(answer.box, image.shape))
    full = np.zeros(image.shape, bool)
    full[answer.box] = answer.mask
    np.testing.assert_array_equal(full, session.previous)
    assert session.previous.shape == image.shape
    again = session.predict()  # same clicks, same mask: nothing changed
    assert all(s.stop == s.start for s in again.box)


@pytest.mark.parametrize("factor", [1, 2], ids=["same-spacing", "downsampled"])
def test_known_network_gives_the_positive_ball_back_on_the_native_grid(tiny_weights, monkeypatch, factor):
    """Logits = (0, positive channel - 0.5): the answer is the positive click's ball, through every step."""
    shape = (48 * factor, 7 * factor, 40 * factor)
    image = _volume(np.random.default_rng(1).uniform(1, 2, shape), (0.625 / factor, 7.8 / factor, 0.625 / factor))
    model = SWFastEditModel(tiny_weights, filters=TINY, roi_size="32,32,32", overlap=0.25, sw_batch_size=3)
    calls = []

    def known(batch):
        calls.append(len(batch))
        return np.stack([np.zeros_like(batch[:, 1]), batch[:, 1] - 0.5], axis=1)

    monkeypatch.setattr(model, "forward", known)
    session = model.start(image)
    positive, negative = (30 * factor + factor - 1, 3 * factor, 9 * factor), (5 * factor, 5 * factor, 33 * factor)
    session.add_click(Click(positive, True))
    session.add_click(Click(negative, False))
    full = np.zeros(shape, bool)
    answer = session.predict()
    full[answer.box] = answer.mask
    # model voxel of native voxel x is x // factor on every axis; the ball is r² ≤ 4 model voxels
    i, j, k = np.indices(shape) // factor
    ci, cj, ck = (v // factor for v in positive)
    expected = (i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2 <= 4
    np.testing.assert_array_equal(full, expected)
    assert np.count_nonzero(full) == 33 * factor**3
    assert sum(calls) > 4 and max(calls) == 3  # many windows, in batches


@pytest.fixture(scope="module")
def phantom():
    return tiny_case(n_lesions=3)


def _run(model, image, instances, lesions, seed):
    return run(model, scenario_from_options("lesion-corrective", interactions=2, stop_dice=None), image, instances,
               lesions, seed=seed)


def test_session_runs_through_the_engine_deterministically(phantom, tiny_weights):
    image, instances, lesions = phantom
    # a coarse grid keeps the tiny phantom at a few windows (the original spacing would give 73 M voxels)
    model = SWFastEditModel(tiny_weights, filters=TINY, roi_size="64,64,32", spacing="15,15,15.6", sw_batch_size=2)
    first = _run(model, image, instances, lesions, seed=4)
    assert len(first.interactions) == 2 * len(lesions) and first.clicks
    assert all(0 <= r.dice_lesion <= 1 for r in first.interactions)
    assert first.prediction is not None and first.prediction.shape == image.shape
    again = _run(model, image, instances, lesions, seed=4)
    untimed = [{k: v for k, v in asdict(r).items() if k not in TIMING} for r in first.interactions]
    assert untimed == [{k: v for k, v in asdict(r).items() if k not in TIMING} for r in again.interactions]
    assert first.clicks == again.clicks
    np.testing.assert_array_equal(first.prediction, again.prediction)


def test_incremental_window_cache_equals_a_full_pass_and_reset_runs_nothing(tiny_weights):
    from nfbench.models.blocks.sliding_window import gaussian_weights, window_boxes

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(5)
        # native (R, A, S) at the model's spacing: the model grid is (160, 96, 48), padded to (160, 96, 64)
        image = _volume(rng.normal(100.0, 20.0, (160, 48, 96)), (0.625, 7.8, 0.625))
        # batch 1 as the reference pass: PyTorch's CPU convolutions differ by ~1e-5 between batch sizes
        model = SWFastEditModel(tiny_weights, filters=TINY, roi_size="64,32,16", overlap=0.25, sw_batch_size=1)
        session = model.start(image)
        total = len(list(window_boxes(session.image.shape, model.roi_size, 0.25)))
        assert total == 3 * 4 * 5 and session.windows_run == total  # the no-click pass
        no_click = session.margin().copy()

        def full_pass():  # every window, blended here independently of the cache
            weights = gaussian_weights(model.roi_size)
            out, norm = np.zeros(session.image.shape, np.float32), np.zeros(session.image.shape, np.float32)
            for box in window_boxes(session.image.shape, model.roi_size, 0.25):
                logits = model.forward(session.inputs(box)[None])[0]
                out[box] += (logits[1] - logits[0]) * weights
                norm[box] += weights
            return out / norm

        per_click = []
        for ijk, positive in [((80, 20, 40), True), ((10, 3, 90), False), ((150, 40, 5), True), ((81, 21, 41), False)]:
            before = session.windows_run
            session.add_click(Click(ijk, positive))
            session.predict()
            per_click.append(session.windows_run - before)
        assert np.abs(session.margin() - full_pass()).max() <= 1e-5
        assert all(0 < n <= 8 for n in per_click)  # a 5-voxel ball meets at most 2 x 2 x 2 of the 60 windows
        before = session.windows_run
        session.reset()
        np.testing.assert_array_equal(session.margin(), no_click)
        assert session.windows_run == before  # the reset ran no window
        session.add_click(Click((80, 20, 40), True))
        session.predict()
        assert session.windows_run - before == per_click[0]
    finally:
        torch.set_num_threads(threads)


def _bright(batch):
    """Logits (0, image - 1): lesion where the z-scored image is above 1, the bright balls here."""
    return np.stack([np.zeros_like(batch[:, 0]), batch[:, 0] - 1.0], axis=1)


@pytest.mark.parametrize("keep", [False, True], ids=["whole", "keep_clicked"])
def test_keep_clicked_answers_only_the_clicked_component(tiny_weights, monkeypatch, one_torch_thread, keep):
    image, balls_mask = two_balls((64, 8, 64), (0.625, 7.8, 0.625))
    model = SWFastEditModel(tiny_weights, filters=TINY, roi_size="64,32,16", keep_clicked=keep)
    monkeypatch.setattr(model, "forward", _bright)
    session = model.start(image)
    session.add_click(Click((40, 4, 20), False))  # a negative click alone: nothing is kept
    session.predict()
    assert session.previous.any() != keep
    session.add_click(Click((12, 4, 12), True))  # inside the first ball
    session.predict()
    labels, n = connected_components(balls_mask)
    assert n == 2
    first = labels == labels[12, 4, 12]
    np.testing.assert_array_equal(session.previous, first if keep else balls_mask)
    session.reset()
    session.add_click(Click((30, 4, 30), True))  # a positive click on background keeps nothing
    check_prediction("sw-fastedit", session.predict(), image.shape)
    assert session.previous.any() != keep


@pytest.mark.parametrize("keep", [False, True], ids=["whole", "keep_clicked"])
def test_partial_remap_equals_the_full_remap(tiny_weights, monkeypatch, one_torch_thread, keep):
    rng = np.random.default_rng(8)
    # native (R, A, S) finer in-plane and coarser across than the model grid: resampled along every axis
    image = _volume(rng.normal(100.0, 20.0, (120, 40, 100)), (0.5, 6.0, 0.8))
    model = SWFastEditModel(tiny_weights, filters=TINY, roi_size="64,32,16", keep_clicked=keep)
    network = model.forward
    # the random network's lesion logit lowered: a few % of the voxels, many components, not one spanning all
    monkeypatch.setattr(model, "forward", lambda batch: network(batch) + np.array([0.0, -1.2])[:, None, None, None])
    session = model.start(image)
    assert session.grid.shape == (96, 128, 31) and len(session.cache.boxes) == 30
    sizes = check_against_full_remap(session, lambda: session.margin()[session.model_box] > 0, keep, rng)
    assert sum(sizes) > 0, sizes


def test_threads_and_keep_clicked_come_as_cli_strings(tiny_weights, one_torch_thread):
    register_model("swf-test", SWFastEditModel)
    try:
        spec = ModelSpec("swf-test", weights=tiny_weights, options={"filters": TINY, "keep_clicked": "true",
                                                                      "threads": "2"}, device="cpu")
        model = load_spec(spec)
        assert model.keep_clicked is True and torch.get_num_threads() == 2
        with pytest.raises(ModelError, match="keep_clicked.*true or false"):
            load_spec(ModelSpec("swf-test", weights=tiny_weights, options={"keep_clicked": "maybe"}))
    finally:
        unregister_model("swf-test")
    with pytest.raises(ValueError, match="threads"):
        SWFastEditModel(tiny_weights, filters=TINY, threads=-1)


def test_evaluate_warns_when_options_differ_from_the_card_beside_the_weights(tiny_weights, tiny_dataset, tmp_path):
    import json
    import shutil

    from typer.testing import CliRunner

    from nfbench.cli import app

    weights = shutil.copy(tiny_weights, tmp_path / "best.pt")
    card = {"model": "sw-fastedit", "weights": {"file": "best.pt"},
            "options": {"filters": TINY, "spacing": "2.5,2.5,7.8", "keep_clicked": "true"}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    args = ["evaluate", "--data", str(tiny_dataset), "--model", "sw-fastedit", "--weights", str(weights),
            "-o", f"filters={TINY}", "-o", "keep_clicked=true", "-s", "lesion-single", "--lesions", "1", "--quiet"]
    result = CliRunner().invoke(app, [*args, "-o", "spacing=7.5,7.5,15.6", "--out", str(tmp_path / "other")])
    assert result.exit_code == 0, result.output
    assert "-o spacing=7.5,7.5,15.6, but best.pt was trained with spacing=2.5,2.5,7.8" in result.output
    same = CliRunner().invoke(app, [*args, "-o", "spacing=2.5,2.5,7.8", "--out", str(tmp_path / "same")])
    assert same.exit_code == 0 and "trained with" not in same.output

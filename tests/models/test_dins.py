"""DINs in PyTorch: the network's signature and size, strict loading, the guide, the geometry, the engine."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import Volume
from nfbench.models import dins
from nfbench.models.base import ModelError, check_prediction
from nfbench.types import Click
from tests.engine import run, tiny_case
from tests.models.answers import check_against_full_remap, kept_components, two_balls


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(tmp_path, base=2, top=4, seed=0):
    torch.manual_seed(seed)
    net = dins.build_network(base, top)
    path = tmp_path / "dins.pt"
    torch.save(net.state_dict(), path)
    return path, net


def test_forward_takes_the_original_channels_last_layout():
    torch.manual_seed(0)
    net = dins.build_network(2, 4).eval()
    image, guide = torch.randn(2, 4, 32, 16, 1), torch.rand(2, 4, 32, 16, 2)  # (B, A, S, R, C)
    with torch.no_grad():
        out = net(image, guide)
    assert out.shape == (2, 4, 32, 16, 2)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.randn(1, 4, 24, 16, 1), torch.rand(1, 4, 24, 16, 2))


def test_full_width_parameter_count_follows_the_original_layers():
    c = [30, 60, 120, 240, 320]

    def block(cin, cout, k):  # two bias-free convolutions and two affine norms
        return k * cin * cout + k * cout * cout + 4 * cout

    expected = (block(3, c[0], 9) + block(c[0], c[1], 9) + block(c[1], c[2], 27) + block(c[2], c[3], 27)
                + block(c[3], c[4], 27)
                + 8 * c[4] * c[3] + block(2 * c[3], c[3], 27)    # up4: 2x2x2 transposed, then 3x3x3
                + 4 * c[3] * c[2] + block(2 * c[2], c[2], 27)    # up3: 1x2x2 transposed
                + 4 * c[2] * c[1] + block(2 * c[1], c[1], 9)
                + 4 * c[1] * c[0] + block(2 * c[0], c[0], 9)
                + 27 * 2 * c[4] + c[4]                           # guide 3x3x3 conv with bias
                + c[0] * 2 + 2)                                  # final 1x1x1 with bias
    assert sum(p.numel() for p in dins.build_network().parameters()) == expected


def test_weights_load_strictly_and_a_missing_key_is_named(tmp_path):
    path, net = _weights(tmp_path)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4)
    for key, value in net.state_dict().items():
        assert torch.equal(model.network.state_dict()[key], value)
    state = net.state_dict()
    del state["bridge.norm1.weight"]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(ModelError, match=r"bridge\.norm1\.weight") as err:
        dins.DINsModel(weights=tmp_path / "cut.pt", base_filters=2, max_filters=4)
    assert "cut.pt" in str(err.value)
    with pytest.raises(ModelError, match="weight file"):
        dins.DINsModel(weights=None)
    torch.save({"net": net.state_dict(), "optimizer": {"state": {}}, "epoch": 3}, tmp_path / "last.pt")
    resumed = dins.DINsModel(weights=tmp_path / "last.pt", base_filters=2, max_filters=4)  # a training run's last.pt
    assert all(torch.equal(resumed.network.state_dict()[k], v) for k, v in net.state_dict().items())


def _volume(data, spacing):
    affine = np.diag([*spacing, 1.0])
    return Volume(np.asarray(data, np.float32), affine, affine, nib.Nifti1Header())


def test_guide_peaks_at_the_mapped_click_and_decays_with_sigma(tmp_path):
    path, _ = _weights(tmp_path)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4)
    # native RAS at (0.85, 7.8, 1.7) mm: model (S, R, A) = (k, i // 2, j) on the 1.7 x 1.7 x 7.8 grid
    session = model.start(_volume(np.ones((40, 6, 30)), (0.85, 7.8, 1.7)))
    assert session.grid.shape == (30, 20, 6)
    session.add_click(Click((17, 2, 12), True))
    session.add_click(Click((3, 5, 2), False))
    guide = session.guide()
    pos, neg = guide
    assert pos[12, 8, 2] == 1.0 and pos.max() == 1.0 and neg[2, 1, 5] == 1.0
    assert pos[13, 8, 2] == pytest.approx(math.exp(-1 / 50), rel=1e-6)     # one voxel along S: σ 5
    assert pos[12, 3, 2] == pytest.approx(math.exp(-25 / 50), rel=1e-6)    # five voxels along R
    assert pos[12, 8, 3] == pytest.approx(math.exp(-1 / 2), rel=1e-6)      # one slice along A: σ 1
    assert pos[15, 12, 1] == pytest.approx(math.exp(-(9 + 16) / 50 - 0.5), rel=1e-6)
    assert neg[12, 8, 2] == pytest.approx(math.exp(-(4 + 49 / 25 + 9) / 2), rel=1e-5)  # the negative click's own map

    sharp = dins.DINsModel(weights=path, base_filters=2, max_filters=4, guide_sigma="2,2,1").start(
        _volume(np.ones((40, 6, 30)), (0.85, 7.8, 1.7)))
    sharp.add_click(Click((17, 2, 12), True))
    pos = sharp.guide()[0]
    assert pos[12, 8, 2] == 1.0 and pos[13, 8, 2] == pytest.approx(math.exp(-1 / 8), rel=1e-6)  # σ 2 along S
    assert pos[12, 8, 3] == pytest.approx(math.exp(-1 / 2), rel=1e-6)  # σ 1 along A
    assert pos[12, 8 + 9, 2] == 0 and pos[12, 8 + 8, 2] > 0  # the 4σ box: 8 voxels in-plane


def test_predicted_mask_is_the_thresholded_guide_mapped_back(tmp_path, monkeypatch):
    path, _ = _weights(tmp_path)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi=(16, 16, 4))
    seen = []

    def fake(image, guide):  # channels-last logits (0, positive guide - 0.5): the mask is where the guide > 0.5
        seen.append((tuple(image.shape), tuple(guide.shape)))
        return torch.stack([torch.zeros_like(guide[..., 0]), guide[..., 0] - 0.5], dim=-1)

    monkeypatch.setattr(model, "network", fake)
    shape = (40, 6, 30)
    session = model.start(_volume(np.ones(shape), (0.85, 7.8, 1.7)))
    click = (17, 2, 12)
    session.add_click(Click(click, True))
    answer = check_prediction("dins", session.predict(), shape)
    # windows (B, A, S, R, C), in batches of at most sw_batch_size (4 by default)
    assert {(image[1:], guide[1:]) for image, guide in seen} == {((4, 16, 16, 1), (4, 16, 16, 2))}
    assert all(image[0] == guide[0] <= 4 for image, guide in seen) and max(image[0] for image, _ in seen) == 4
    assert sum(image[0] for image, _ in seen) == session.windows_run > 4
    i, j, k = np.indices(shape)
    # model voxel (k, i // 2, j); inside where exp(-d²/2) > 0.5, d in σ units
    d2 = ((k - click[2]) / 5) ** 2 + ((i // 2 - click[0] // 2) / 5) ** 2 + (j - click[1]) ** 2
    expected = d2 < 2 * math.log(2)
    full = np.zeros(shape, bool)
    full[answer.box] = answer.mask
    assert np.array_equal(full, expected)
    assert answer.box == tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(expected))
    again = check_prediction("dins", session.predict(), shape)  # nothing changed: an empty box
    assert again.mask.size == 0


@pytest.fixture(scope="module")
def case():
    return tiny_case(n_lesions=3)


def test_end_to_end_through_the_engine(case, tmp_path):
    image, instances, lesions = case
    path, _ = _weights(tmp_path, seed=3)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi="64,32,8", spacing="15,15,15.6")
    scenario = scenario_from_options("lesion-corrective", interactions=2, stop_dice=None)
    session = model.start(image, seed=0)
    session.add_click(Click(tuple(int(v) for v in np.argwhere(instances == 1)[0]), True))
    check_prediction("dins", session.predict(), image.shape)
    first = run(model, scenario, image, instances, lesions)
    second = run(model, scenario, image, instances, lesions)
    assert len(first.interactions) == 2 * len(lesions)
    untimed = [{k: v for k, v in vars(r).items() if k not in ("latency_ms", "overhead_ms")} for r in first.interactions]
    assert untimed == [{k: v for k, v in vars(r).items() if k not in ("latency_ms", "overhead_ms")}
                       for r in second.interactions]
    assert first.clicks == second.clicks


def test_registered_model_takes_its_options_as_cli_strings(tmp_path):
    from nfbench.models.registry import load_spec, register_model, unregister_model
    from nfbench.models.spec import ModelSpec

    path, _ = _weights(tmp_path)
    register_model("dins-test", dins.DINsModel)
    try:
        assert dins.DINsModel.requirements() == [
            "no weight file given (--weights PATH on the command line, weights=PATH when loading the model in Python)"]
        model = load_spec(ModelSpec("dins-test", path, {"base_filters": "2", "max_filters": "4", "roi": "32,32,4",
                                                        "spacing": "3.4,3.4,7.8"}, "cpu"))
        assert (model.roi, model.spacing) == ((32, 32, 4), (3.4, 3.4, 7.8))
        with pytest.raises(ModelError, match="roi must be"):
            load_spec(ModelSpec("dins-test", path, {"roi": "30,32,4"}, "cpu"))
    finally:
        unregister_model("dins-test")


def test_importing_the_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, nfbench.models.dins; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_incremental_window_cache_equals_a_full_pass_and_reset_runs_nothing(tmp_path):
    from nfbench.models.blocks.sliding_window import gaussian_weights, window_boxes

    path, _ = _weights(tmp_path, seed=4)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi=(64, 32, 4))
    rng = np.random.default_rng(6)
    # native RAS at (1.7, 7.8, 1.7) mm: the model grid (S, R, A) is (192, 128, 24), no resampling
    session = model.start(_volume(rng.normal(50.0, 10.0, (128, 24, 192)), (1.7, 7.8, 1.7)))
    assert session.grid.shape == (192, 128, 24)
    total = len(list(window_boxes(session.inputs.shape[1:], model.roi, 0.25)))
    assert total == 4 * 5 * 8 and session.windows_run == total  # the no-click pass
    no_click = session.logits().copy()

    def full_pass():  # every window of the current inputs, blended here independently of the cache
        weights = gaussian_weights(model.roi)
        out, norm = np.zeros((2, *session.grid.shape), np.float32), np.zeros(session.grid.shape, np.float32)
        for box in window_boxes(session.grid.shape, model.roi, 0.25):
            out[(slice(None), *box)] += model.logits(session.inputs[(slice(None), *box)]) * weights
            norm[box] += weights
        return out / norm

    per_click = []
    for ijk, positive in [((60, 12, 90), True), ((5, 2, 180), False), ((120, 22, 10), True), ((61, 12, 91), False)]:
        before = session.windows_run
        session.add_click(Click(ijk, positive))
        session.predict()
        per_click.append(session.windows_run - before)
    assert np.abs(session.logits() - full_pass()).max() <= 1e-5
    assert all(0 < n < total // 2 for n in per_click)  # a click's 4σ box is 41 x 41 x 9 voxels
    before = session.windows_run
    session.reset()
    np.testing.assert_array_equal(session.logits(), no_click)
    assert session.windows_run == before and not session.guide().any()  # the reset ran no window
    session.add_click(Click((60, 12, 90), True))
    session.predict()
    assert session.windows_run - before == per_click[0]


def _bright(image, guide):
    """Channels-last logits (0, image - 1): lesion where the z-scored image is above 1."""
    return torch.stack([torch.zeros_like(image[..., 0]), image[..., 0] - 1.0], dim=-1)


@pytest.mark.parametrize("keep", [False, True], ids=["whole", "keep_clicked"])
def test_keep_clicked_answers_only_the_clicked_component(tmp_path, monkeypatch, keep):
    from nfbench.components import connected_components

    path, _ = _weights(tmp_path)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi=(32, 32, 4), keep_clicked=keep)
    monkeypatch.setattr(model, "network", _bright)
    image, balls = two_balls((64, 6, 80), (1.7, 7.8, 1.7))
    session = model.start(image)
    session.add_click(Click((40, 3, 20), False))  # a negative click alone: nothing is kept
    session.predict()
    assert session.previous.any() != keep
    session.add_click(Click((12, 3, 12), True))
    check_prediction("dins", session.predict(), image.shape)
    labels, n = connected_components(balls)
    assert n == 2
    np.testing.assert_array_equal(session.previous, labels == labels[12, 3, 12] if keep else balls)
    session.reset()
    session.add_click(Click((30, 3, 40), True))  # on background: nothing is kept
    session.predict()
    assert session.previous.any() != keep


def test_honour_clicks_answers_a_clicked_voxel_the_network_calls_background(tmp_path, monkeypatch):
    path, _ = _weights(tmp_path)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi=(32, 32, 4), keep_clicked=True,
                           honour_clicks=True)
    monkeypatch.setattr(model, "network", _bright)
    image, balls = two_balls((64, 6, 80), (1.7, 7.8, 1.7))
    session = model.start(image)
    session.add_click(Click((30, 3, 40), True))  # on background: the clicked voxel alone
    session.predict()
    assert not balls[30, 3, 40] and np.argwhere(session.previous).tolist() == [[30, 3, 40]]
    session.add_click(Click((12, 3, 12), True))  # on a ball: the ball is added, the first voxel stays
    session.predict()
    expected = kept_components(balls, [(12, 3, 12)])  # labelled by scipy, not by the model's cc3d
    expected[30, 3, 40] = True
    np.testing.assert_array_equal(session.previous, expected)
    session.reset()
    session.predict()
    assert not session.previous.any()


@pytest.mark.parametrize("keep", [False, True], ids=["whole", "keep_clicked"])
def test_partial_remap_equals_the_full_remap(tmp_path, monkeypatch, keep):
    path, net = _weights(tmp_path, seed=6)
    with torch.no_grad():  # random norm scales and shifts: a less uniform answer than a fresh network's
        for name, p in net.named_parameters():
            if ".norm" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    torch.save(net.state_dict(), path)
    model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi=(32, 32, 4), keep_clicked=keep)
    network = model.network
    # the lesion logit raised a little: a few % of the voxels, many components, not one spanning all
    monkeypatch.setattr(model, "network", lambda image, guide: network(image, guide) + torch.tensor([0.0, 0.2]))
    rng = np.random.default_rng(9)
    # native RAS (0.85, 6.0, 2.2) mm: the model grid (1.7, 1.7, 7.8) is resampled along every axis
    session = model.start(_volume(rng.normal(50.0, 10.0, (100, 20, 70)), (0.85, 6.0, 2.2)))
    assert session.grid.shape == (91, 50, 15) and len(session.cache.boxes) > 20
    logits = session.logits()
    assert 0.01 < np.mean(logits[1] > logits[0]) < 0.2

    def raw():
        logits = session.logits()
        return logits[1] > logits[0]

    sizes = check_against_full_remap(session, raw, keep, rng)
    assert sum(sizes) > 0


def test_batches_of_windows_equal_single_windows(tmp_path):
    path, _ = _weights(tmp_path, seed=6)
    image = _volume(np.random.default_rng(7).normal(50.0, 10.0, (64, 12, 96)), (1.7, 7.8, 1.7))
    answers = {}
    for batch in (1, 3):
        model = dins.DINsModel(weights=path, base_filters=2, max_filters=4, roi=(32, 32, 4), sw_batch_size=batch)
        calls = []
        forward = model.forward
        model.forward = lambda windows, forward=forward, calls=calls: calls.append(len(windows)) or forward(windows)
        session = model.start(image)
        session.add_click(Click((30, 6, 50), True))
        session.add_click(Click((5, 2, 90), False))
        session.predict()
        answers[batch] = session.logits().copy()
        assert max(calls) == batch and sum(calls) == session.windows_run
    assert np.abs(answers[1] - answers[3]).max() <= 1e-5


def test_threads_keep_clicked_and_batch_come_as_cli_strings(tmp_path):
    from nfbench.models.registry import load_spec, register_model, unregister_model
    from nfbench.models.spec import ModelSpec

    path, _ = _weights(tmp_path)
    register_model("dins-test", dins.DINsModel)
    try:
        model = load_spec(ModelSpec("dins-test", path, {"base_filters": "2", "max_filters": "4", "keep_clicked": "yes",
                                                        "threads": "2", "sw_batch_size": "2"}, "cpu"))
        assert (model.keep_clicked, model.sw_batch_size, torch.get_num_threads()) == (True, 2, 2)
        for option, value in (("threads", "-1"), ("sw_batch_size", "0")):
            with pytest.raises(ModelError, match=option):
                load_spec(ModelSpec("dins-test", path, {option: value}, "cpu"))
    finally:
        unregister_model("dins-test")

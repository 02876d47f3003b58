"""DINs through ONNX: export in the original signature, ONNX Runtime inference, conversion back, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.interaction.scenarios import scenario_from_options
from nfbench.models import dins, dins_onnx
from nfbench.models.base import ModelError
from nfbench.models.registry import load_spec, register_model, unregister_model
from nfbench.models.spec import ModelSpec
from tests.engine import run, tiny_case
from tests.models.answers import two_balls

ROI = (64, 32, 2)  # (S, R, A): ONNX window (A, S, R) = (2, 64, 32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _network(seed=0, trained=True):
    """A tiny DINs; ``trained`` gives the norms random scales and shifts (a fresh one has all ones and zeros)."""
    torch.manual_seed(seed)
    net = dins.build_network(2, 4).eval()
    if trained:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if ".norm" in name:
                    p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    return net


def _inputs(batch, roi=ROI, seed=1):
    s, r, a = roi
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, a, s, r, 1, generator=g), torch.rand(batch, a, s, r, 2, generator=g)


def _torch_logits(net, image, guide):
    with torch.no_grad():
        return net(image, guide).numpy()


def test_onnx_runtime_matches_pytorch_in_the_original_signature(tmp_path):
    import onnxruntime as ort

    net = _network()
    path = dins_onnx.export_onnx(net, tmp_path / "m.onnx", ROI)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes == {"image": ["batch", 2, 64, 32, 1], "guide": ["batch", 2, 64, 32, 2]}
    assert [o.shape for o in session.get_outputs()] == [["batch", 2, 64, 32, 2]]
    for batch in (1, 3):  # the batch axis is dynamic
        image, guide = _inputs(batch, seed=batch)
        (out,) = session.run(None, {"image": image.numpy(), "guide": guide.numpy()})
        expected = _torch_logits(net, image, guide)
        assert out.shape == (batch, 2, 64, 32, 2)
        assert np.abs(out - expected).max() <= 1e-4
        assert np.abs(expected).max() > 0.1  # not a trivially small output


@pytest.mark.parametrize("trained", [True, False], ids=["trained", "fresh"])
def test_export_convert_load_gives_the_same_logits(tmp_path, trained):
    net = _network(seed=2, trained=trained)
    path = dins_onnx.export_onnx(net, tmp_path / "m.onnx", ROI)
    if not trained:  # equal-valued norm scales were merged into one initializer and recorded as aliases
        held = {init.name for init in onnx.load(str(path)).graph.initializer}
        assert "down1.norm2.weight" not in held
    back, widths = dins_onnx.network_from_onnx(path)
    assert widths == {"base_filters": 2, "max_filters": 4}
    for key, value in net.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    torch.save(back.state_dict(), tmp_path / "back.pt")
    model = dins.DINsModel(weights=tmp_path / "back.pt", **widths, roi=ROI)
    window = np.random.default_rng(3).normal(size=(3, *ROI)).astype(np.float32)
    onnx_model = dins_onnx.DINsOnnxModel(weights=path)
    assert np.abs(model.logits(window) - onnx_model.logits(window)).max() <= 1e-4
    expected = _torch_logits(net, torch.from_numpy(window.transpose(3, 1, 2, 0)[None, ..., :1].copy()),
                             torch.from_numpy(window.transpose(3, 1, 2, 0)[None, ..., 1:].copy()))
    assert np.abs(model.logits(window) - expected[0].transpose(3, 1, 2, 0)).max() <= 1e-4


def test_the_window_comes_from_the_file_and_a_mismatch_is_refused(tmp_path):
    path = dins_onnx.export_onnx(_network(), tmp_path / "m.onnx", ROI)
    assert dins_onnx.DINsOnnxModel(weights=path).roi == ROI
    with pytest.raises(ModelError, match=r"m\.onnx.*fixed window \(S, R, A\) = \(64, 32, 2\)"):
        dins_onnx.DINsOnnxModel(weights=path, roi="32,32,2")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match=r"junk\.onnx.*ONNX Runtime"):
        dins_onnx.DINsOnnxModel(weights=tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="weight file"):
        dins_onnx.DINsOnnxModel(weights=None)
    assert dins_onnx.DINsOnnxModel.requirements(path) == []
    assert dins_onnx.DINsOnnxModel.requirements(tmp_path / "nope.onnx") == [f"weight file {str(tmp_path / 'nope.onnx')!r} does not exist"]


def test_a_file_without_our_names_is_refused_with_what_it_holds(tmp_path):
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 3, 1, 3, 3), np.float32), "model/down1/conv1/kernel:0")
    graph = helper.make_graph([], "g", [], [], initializer=[weight])
    onnx.save(helper.make_model(graph), str(tmp_path / "tf.onnx"))
    with pytest.raises(ModelError, match=r"tf\.onnx.*no initializer.*model/down1/conv1/kernel:0"):
        dins_onnx.network_from_onnx(tmp_path / "tf.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match=r"junk\.onnx' cannot be read"):
        dins_onnx.network_from_onnx(tmp_path / "junk.onnx")


TF_EXPORT = Path(__file__).parent / "data" / "tf_dins_tiny.onnx"  # written by data/make_tf_dins_onnx.py


def test_the_originals_tensorflow_export_converts_to_tensorflows_logits(tmp_path):
    """A tf2onnx export of the Keras DINs (widths 2-4): its weights in PyTorch give TensorFlow's logits."""
    reference = np.load(TF_EXPORT.with_suffix(".npz"))
    image, guide, logits = (torch.from_numpy(reference[k]) for k in ("image", "guide", "logits"))
    network, widths = dins_onnx.network_from_onnx(TF_EXPORT)
    assert widths == {"base_filters": 2, "max_filters": 4}
    assert np.abs(_torch_logits(network.eval(), image, guide) - logits.numpy()).max() <= 1e-4
    assert np.abs(logits.numpy()).max() > 0.5  # not a trivially small output
    result = CliRunner().invoke(app, ["convert", "dins-onnx-to-torch", str(TF_EXPORT), "--out", str(tmp_path / "tf.pt")])
    assert result.exit_code == 0, result.output
    model = dins.DINsModel(weights=tmp_path / "tf.pt", **widths, roi=(32, 32, 2))  # loads strictly
    window = np.concatenate([reference["image"], reference["guide"]], axis=-1)[0].transpose(3, 1, 2, 0)
    assert np.abs(model.logits(window) - logits.numpy()[0].transpose(3, 1, 2, 0)).max() <= 1e-4


def test_a_tensorflow_export_runs_in_dins_onnx_with_its_fixed_axes():
    """The original's last exports fix the batch (1) and (S, R) and leave the depth A dynamic."""
    model = dins_onnx.DINsOnnxModel(weights=TF_EXPORT)
    assert model.roi == (32, 32, 10) and model.file_batch == 1  # A from the original window
    assert dins_onnx.DINsOnnxModel(weights=TF_EXPORT, roi="32,32,2").roi == (32, 32, 2)
    with pytest.raises(ModelError, match=r"tf_dins_tiny\.onnx.*fixed window \(S, R, A\) = \(32, 32, 'any'\)"):
        dins_onnx.DINsOnnxModel(weights=TF_EXPORT, roi="64,32,2")
    reference = np.load(TF_EXPORT.with_suffix(".npz"))
    window = np.concatenate([reference["image"], reference["guide"]], axis=-1)[0].transpose(3, 1, 2, 0)
    out = dins_onnx.DINsOnnxModel(weights=TF_EXPORT, roi="32,32,2").forward(np.stack([window, window]))
    assert np.abs(out - reference["logits"][0].transpose(3, 1, 2, 0)).max() <= 1e-4  # two runs of batch 1


def test_a_tensorflow_export_with_another_epsilon_or_a_missing_weight_is_refused(tmp_path):
    from onnx import numpy_helper

    model = onnx.load(str(TF_EXPORT))
    node = next(n for n in model.graph.node if n.name.endswith("/down2/norm1/batchnorm/add"))
    epsilon = next(i for i in model.graph.initializer if i.name == node.input[1])
    epsilon.CopyFrom(numpy_helper.from_array(np.full((1, 1, 1, 1, 1), 1e-5, np.float32), epsilon.name))
    onnx.save(model, str(tmp_path / "eps.onnx"))
    with pytest.raises(ModelError, match=r"eps\.onnx.*: \w+\.norm[12] has InstanceNorm epsilon 1e-05, not the 0\.001"):
        dins_onnx.network_from_onnx(tmp_path / "eps.onnx")
    model = onnx.load(str(TF_EXPORT))
    kept = [i for i in model.graph.initializer if not i.name.endswith("/up3/up/conv3d_transpose/ReadVariableOp:0")]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.save(model, str(tmp_path / "lost.onnx"))
    with pytest.raises(ModelError, match=r"lost\.onnx.*no initializer for 1 DINs parameter\(s\) \(up3\.up\.weight\)"):
        dins_onnx.network_from_onnx(tmp_path / "lost.onnx")


def test_cli_export_and_convert_end_to_end(tmp_path):
    net = _network(seed=4)
    torch.save(net.state_dict(), tmp_path / "dins.pt")
    runner = CliRunner()
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "dins", "--weights", str(tmp_path / "dins.pt"), "--out", str(out),
                                 "-o", "base_filters=2", "-o", "max_filters=4", "-o", "roi=64,32,2"])
    assert result.exit_code == 0, result.output
    assert dins_onnx.DINsOnnxModel(weights=out).roi == ROI
    full = tmp_path / "full.onnx"  # the default window: the original signature
    result = runner.invoke(app, ["export", "dins", "--weights", str(tmp_path / "dins.pt"), "--out", str(full),
                                 "-o", "base_filters=2", "-o", "max_filters=4"])
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(full)).graph
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    assert shapes == {"image": ["batch", 10, 512, 160, 1], "guide": ["batch", 10, 512, 160, 2],
                      "logits": ["batch", 10, 512, 160, 2]}
    assert dins_onnx.DINsOnnxModel(weights=full).roi == (512, 160, 10)
    back = tmp_path / "back.pt"
    result = runner.invoke(app, ["convert", "dins-onnx-to-torch", str(out), "--out", str(back)])
    assert result.exit_code == 0, result.output
    assert "base_filters=2" in result.output
    fixed = runner.invoke(app, ["convert", "dins-onnx-to-torch", str(full), "--out", str(tmp_path / "full.pt")])
    assert fixed.exit_code == 0 and "-o roi=512,160,10" in fixed.output  # the window the file fixes
    state = torch.load(back, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items()) and set(state) == set(net.state_dict())

    missing = runner.invoke(app, ["convert", "dins-onnx-to-torch", str(tmp_path / "nope.onnx"), "--out", str(back)])
    assert missing.exit_code == 1 and "nope.onnx" in missing.output and "does not exist" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    nowhere = runner.invoke(app, ["export", "dins", "--weights", str(tmp_path / "dins.pt"), "--out",
                                  str(tmp_path / "no" / "x.onnx"), "-o", "base_filters=2", "-o", "max_filters=4"])
    assert nowhere.exit_code == 1 and "its folder" in nowhere.output and "does not exist" in nowhere.output
    missing = runner.invoke(app, ["export", "dins", "--weights", str(tmp_path / "nope.pt"), "--out", str(out)])
    assert missing.exit_code == 1 and "nope.pt" in missing.output and "does not exist" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    bad = runner.invoke(app, ["export", "dins", "--weights", str(tmp_path / "dins.pt"), "--out", str(out), "-o", "width=3"])
    assert bad.exit_code == 1 and "width" in bad.output


def test_dins_onnx_runs_the_engine_with_the_rows_of_dins(tmp_path):
    image, instances, lesions = tiny_case(n_lesions=3)
    net = _network(seed=3)
    torch.save(net.state_dict(), tmp_path / "dins.pt")
    roi, spacing = (64, 32, 8), "15,15,15.6"
    dins_onnx.export_onnx(net, tmp_path / "dins.onnx", roi)
    register_model("dins-onnx-test", dins_onnx.DINsOnnxModel)
    try:
        onnx_model = load_spec(ModelSpec("dins-onnx-test", tmp_path / "dins.onnx", {"spacing": spacing}, "cpu"))
    finally:
        unregister_model("dins-onnx-test")
    torch_model = dins.DINsModel(weights=tmp_path / "dins.pt", base_filters=2, max_filters=4, roi=roi, spacing=spacing)
    scenario = scenario_from_options("lesion-corrective", interactions=2, stop_dice=None)
    expected = run(torch_model, scenario, image, instances, lesions)
    got = run(onnx_model, scenario, image, instances, lesions)
    assert len(got.interactions) == 2 * len(lesions)
    # logits agree to ~1e-6 (float32 rounding), far below the tiny network's decision margins here:
    # the masks, so the Dice figures and the next clicks, are identical
    for name in ("interactions", "clicks"):
        rows = [[{k: v for k, v in vars(r).items() if k not in ("latency_ms", "overhead_ms", "model")}
                 for r in getattr(result, name)] for result in (got, expected)]
        assert rows[0] == rows[1], name
    assert {r.model for r in got.interactions} == {"dins-onnx"}
    assert any(r.dice_lesion > 0 for r in got.interactions)  # the network segments something


def test_importing_the_module_and_the_cli_does_not_import_torch_or_onnx():
    import subprocess
    import sys

    code = ("import sys, nfbench.models.dins_onnx, nfbench.cli; "
            "print([m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


class _BrightRuntime:
    """Stands in for an ONNX Runtime session: logits (0, image - 1), batches of a fixed size when given."""

    def __init__(self, batch=None):
        self.batch, self.sizes = batch, []

    def run(self, outputs, feeds):
        image, guide = feeds["image"], feeds["guide"]
        assert image.shape[:4] == guide.shape[:4] and (self.batch is None or len(image) == self.batch)
        self.sizes.append(len(image))
        return [np.concatenate([np.zeros_like(image), image - 1.0], axis=-1)]


@pytest.mark.parametrize("keep", [False, True], ids=["whole", "keep_clicked"])
def test_keep_clicked_answers_only_the_clicked_component(tmp_path, keep):
    from nfbench.components import connected_components
    from nfbench.types import Click

    path = dins_onnx.export_onnx(_network(), tmp_path / "m.onnx", (32, 32, 4))
    model = dins_onnx.DINsOnnxModel(weights=path, keep_clicked=keep)
    model.session = _BrightRuntime()
    image, balls = two_balls((64, 6, 80), (1.7, 7.8, 1.7))
    session = model.start(image)
    session.add_click(Click((12, 3, 12), True))
    session.predict()
    labels, _ = connected_components(balls)
    np.testing.assert_array_equal(session.previous, labels == labels[12, 3, 12] if keep else balls)
    assert max(model.session.sizes) == 4  # sw_batch_size windows in one run


def test_batches_equal_single_windows_and_a_fixed_batch_is_filled(tmp_path):
    path = dins_onnx.export_onnx(_network(seed=5), tmp_path / "m.onnx", ROI)
    windows = np.random.default_rng(4).normal(size=(5, 3, *ROI)).astype(np.float32)
    model = dins_onnx.DINsOnnxModel(weights=path, sw_batch_size=3)
    assert model.file_batch is None
    single = np.stack([model.logits(w) for w in windows])
    assert np.abs(model.forward(windows) - single).max() <= 1e-5
    model.file_batch, model.session = 2, _BrightRuntime(batch=2)  # a file whose batch axis is fixed to 2
    out = model.forward(windows)
    assert model.session.sizes == [2, 2, 2] and out.shape == (5, 2, *ROI)
    np.testing.assert_array_equal(out[:, 1], windows[:, 0] - 1.0)


def test_threads_go_to_onnx_runtime(tmp_path):
    path = dins_onnx.export_onnx(_network(), tmp_path / "m.onnx", ROI)
    register_model("dins-onnx-test", dins_onnx.DINsOnnxModel)
    try:
        model = load_spec(ModelSpec("dins-onnx-test", path, {"threads": "1", "keep_clicked": "true",
                                                              "sw_batch_size": "2"}, "cpu"))
    finally:
        unregister_model("dins-onnx-test")
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert (model.keep_clicked, model.sw_batch_size) == (True, 2)
    assert dins_onnx.DINsOnnxModel(weights=path).session.get_session_options().intra_op_num_threads == 0
    with pytest.raises(ValueError, match="threads"):
        dins_onnx.DINsOnnxModel(weights=path, threads=-2)

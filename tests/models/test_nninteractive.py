"""nnInteractive: prompts reach its session API in its voxel order with their signs, one prediction per
prompt, resets per lesion, clear messages for a missing package or folder; the real package runs end to
end on a tiny randomly initialised model folder, and on the released weights when they are present."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, check_prediction
from nfbench.models.nninteractive import MODEL_DIR_ENV, NNInteractiveModel, find_model_folder, folder_problems
from nfbench.types import Box, Click
from tests.engine import run, tiny_case


def _volume(data, spacing=(1.0, 1.0, 1.0)) -> Volume:
    affine = np.diag([*spacing, 1.0])
    return Volume(np.asarray(data, np.float32), affine, affine.copy(), nib.Nifti1Header())


class FakeSession:
    """A stand-in for ``nnInteractiveInferenceSession``: records every call; a positive point writes a
    3 × 3 × 3 cube (a negative one clears it), a box fills itself; each returns the box it wrote."""

    def __init__(self, *, return_boxes: bool = True, refuse: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.return_boxes, self.refuse = return_boxes, refuse

    def set_image(self, image, image_properties=None):
        self.calls.append(("set_image", image.shape, dict(image_properties or {})))
        self.image = np.array(image)

    def set_target_buffer(self, target_buffer):
        self.calls.append(("set_target_buffer", target_buffer.shape, target_buffer.dtype))
        self.target = target_buffer

    def reset_interactions(self):
        self.calls.append(("reset_interactions",))
        self.target.fill(0)

    def _write(self, bbox, value):
        clipped = [[max(lo, 0), min(hi, n)] for (lo, hi), n in zip(bbox, self.target.shape)]
        self.target[tuple(slice(lo, hi) for lo, hi in clipped)] = value
        return clipped if self.return_boxes else None

    def add_point_interaction(self, coordinates, include_interaction, run_prediction=True):
        self.calls.append(("point", tuple(coordinates), include_interaction, run_prediction))
        if self.refuse:
            raise ValueError(self.refuse)
        return self._write([[c - 1, c + 2] for c in coordinates], int(include_interaction))

    def add_bbox_interaction(self, bbox_coords, include_interaction, run_prediction=True):
        self.calls.append(("bbox", [list(b) for b in bbox_coords], include_interaction, run_prediction))
        return self._write(bbox_coords, 1)

    def prompts(self):
        return [c for c in self.calls if c[0] in ("point", "bbox")]


def _cube(shape, centre):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(max(c - 1, 0), c + 2) for c in centre)] = True
    return mask


# -- mapping, with a stand-in session ------------------------------------------------------------------
def test_the_image_goes_in_raw_as_one_channel_in_the_canonical_order():
    data = np.random.default_rng(0).normal(100, 30, (6, 4, 5)).astype(np.float32)
    image, fake = _volume(data, (0.625, 7.8, 0.625)), FakeSession()
    NNInteractiveModel.from_session(fake).start(image)
    assert fake.calls[0] == ("set_image", (1, 6, 4, 5), {"spacing": (0.625, 7.8, 0.625)})
    assert fake.calls[1] == ("set_target_buffer", (6, 4, 5), np.uint8)
    np.testing.assert_array_equal(fake.image[0], data)  # not normalised, not windowed
    np.testing.assert_array_equal(image.data, data)  # the input is untouched


def test_clicks_keep_their_voxel_and_sign_and_each_is_predicted():
    fake = FakeSession()
    session = NNInteractiveModel.from_session(fake).start(_volume(np.ones((10, 8, 12))))
    session.add_click(Click((4, 3, 6), True))
    session.add_click(Click((7, 2, 9), False))
    assert fake.prompts() == []  # prompts wait for predict
    answer = check_prediction("nninteractive", session.predict(), (10, 8, 12))
    assert fake.prompts() == [("point", (4, 3, 6), True, True), ("point", (7, 2, 9), False, True)]
    assert answer.box == (slice(3, 9), slice(1, 5), slice(5, 11))  # the union of the two written boxes
    full = np.zeros((10, 8, 12), bool)
    full[answer.box] = answer.mask
    np.testing.assert_array_equal(full, _cube(full.shape, (4, 3, 6)))


def test_a_coronal_box_is_the_packages_2d_box_and_comes_before_the_clicks():
    fake = FakeSession()
    session = NNInteractiveModel.from_session(fake).start(_volume(np.ones((10, 8, 12))))
    session.add_box(Box((2, 5, 3), (8, 6, 9)))
    session.add_click(Click((4, 5, 6), True))
    answer = session.predict()
    assert fake.prompts() == [("bbox", [[2, 8], [5, 6], [3, 9]], True, True), ("point", (4, 5, 6), True, True)]
    assert answer.box == (slice(2, 8), slice(4, 7), slice(3, 9))
    assert answer.mask[:, 1, :].all()  # the box's slice, filled


@pytest.mark.parametrize("axis_order", ["kji", "jki"])
def test_another_axis_order_maps_image_prompts_and_answer_consistently(axis_order):
    data = np.arange(10 * 8 * 12, dtype=np.float32).reshape(10, 8, 12)
    fake = FakeSession()
    session = NNInteractiveModel.from_session(fake, axis_order=axis_order).start(_volume(data, (1.0, 2.0, 3.0)))
    perm = ["ijk".index(c) for c in axis_order]
    np.testing.assert_array_equal(fake.image[0], data.transpose(perm))
    assert fake.calls[0][2] == {"spacing": tuple((1.0, 2.0, 3.0)[a] for a in perm)}
    session.add_box(Box((2, 5, 3), (8, 6, 9)))
    session.add_click(Click((4, 3, 6), True))
    answer = check_prediction("nninteractive", session.predict(), data.shape)
    lo, hi, ijk = (2, 5, 3), (8, 6, 9), (4, 3, 6)
    assert fake.prompts() == [("bbox", [[lo[a], hi[a]] for a in perm], True, True),
                              ("point", tuple(ijk[a] for a in perm), True, True)]
    full = np.zeros(data.shape, bool)
    full[answer.box] = answer.mask
    expected = _cube(data.shape, ijk)
    expected[2:8, 5, 3:9] = True
    np.testing.assert_array_equal(full, expected)


def test_reset_clears_the_package_and_the_waiting_prompts():
    fake = FakeSession()
    session = NNInteractiveModel.from_session(fake).start(_volume(np.ones((6, 6, 6))))
    session.add_click(Click((2, 2, 2), True))
    session.predict()
    session.add_click(Click((4, 4, 4), True))  # given, then abandoned by a reset
    session.reset()
    assert fake.calls[-1] == ("reset_interactions",) and not fake.target.any()
    nothing = session.predict()
    assert all(s.stop == s.start for s in nothing.box)  # nothing new: "nothing changed"
    assert len(fake.prompts()) == 1


def test_without_returned_boxes_the_answer_is_the_whole_image():
    fake = FakeSession(return_boxes=False)
    session = NNInteractiveModel.from_session(fake).start(_volume(np.ones((6, 5, 4))))
    session.add_click(Click((2, 2, 2), True))
    answer = session.predict()
    assert answer.box == (slice(0, 6), slice(0, 5), slice(0, 4))
    np.testing.assert_array_equal(answer.mask, _cube((6, 5, 4), (2, 2, 2)))


def test_a_refusal_of_the_package_and_a_stale_session_are_model_errors():
    fake = FakeSession(refuse="Input image is entirely zero")
    model = NNInteractiveModel.from_session(fake)
    session = model.start(_volume(np.ones((4, 4, 4))))
    session.add_click(Click((1, 1, 1), True))
    with pytest.raises(ModelError, match="refused Click.*entirely zero"):
        session.predict()
    model.start(_volume(np.ones((4, 4, 4))))
    with pytest.raises(ModelError, match="replaced by a later start"):
        session.predict()
    with pytest.raises(ValueError, match="option 'axis_order' takes one of ijk"):
        NNInteractiveModel.from_session(fake, axis_order="xyz")
    with pytest.raises(ValueError, match="option 'threads' must be 0"):
        NNInteractiveModel(threads=-1)


def test_the_engine_resets_per_lesion_and_gives_each_lesion_its_coronal_box():
    image, instances, lesions = tiny_case(3)
    fake = FakeSession()
    model = NNInteractiveModel.from_session(fake)
    scenario = scenario_from_options("lesion-corrective", lesions=3, interactions=2, boxes=True)
    result = run(model, scenario, image, instances, lesions)
    boxes = [c for c in fake.calls if c[0] == "bbox"]
    assert len(boxes) == 3 and all(b[1][1][1] - b[1][1][0] == 1 for b in boxes)  # one coronal slice each
    assert sum(c == ("reset_interactions",) for c in fake.calls) >= 3
    points = [c for c in fake.calls if c[0] == "point"]
    clicks = [(r.i, r.j, r.k) for r in result.clicks]
    assert [p[1] for p in points] == clicks  # the canonical voxels, unchanged
    assert [p[2] for p in points] == [r.positive for r in result.clicks]


# -- what is missing -----------------------------------------------------------------------------------
def _model_folder(root: Path, *, checkpoint: bool = True) -> Path:
    root.mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "inference_session_class.json"):
        (root / name).write_text("{}")
    (root / "fold_0").mkdir()
    if checkpoint:
        (root / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    return root


def test_no_folder_given_names_the_option_and_the_variable(monkeypatch):
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    folder, problems = find_model_folder(None)
    assert folder is None and "--weights DIR" in problems[0] and MODEL_DIR_ENV in problems[0]
    assert "never downloads" in problems[0]
    assert any(MODEL_DIR_ENV in p for p in NNInteractiveModel.requirements())


def test_a_wrong_folder_names_each_missing_file(tmp_path):
    assert "does not exist" in find_model_folder(tmp_path / "absent")[1][0]
    (tmp_path / "file.pth").write_bytes(b"")
    assert "is a file" in find_model_folder(tmp_path / "file.pth")[1][0]
    empty = tmp_path / "empty"
    empty.mkdir()
    problems = folder_problems(empty)
    assert any("plans.json' is missing" in p for p in problems)
    assert any("dataset.json' is missing" in p for p in problems)
    assert any("inference_info.json nor inference_session_class.json" in p for p in problems)
    assert any("exactly one fold_* folder, found none" in p for p in problems)
    partial = _model_folder(tmp_path / "partial", checkpoint=False)
    assert any(str(partial / "fold_0" / "checkpoint_final.pth") in p for p in folder_problems(partial))
    with pytest.raises(ModelError, match="checkpoint_final.pth' is missing"):
        NNInteractiveModel(weights=partial)


def test_the_folder_is_found_in_a_download_root_and_through_the_variable(tmp_path, monkeypatch):
    model = _model_folder(tmp_path / "root" / "nnInteractive_v1.0")
    assert find_model_folder(tmp_path / "root") == (model, [])
    assert find_model_folder(model) == (model, [])
    nested = _model_folder(tmp_path / "home" / "models" / "nnInteractive_v1.0")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "home"))
    assert find_model_folder(None) == (nested, [])
    assert folder_problems(model) == []
    _model_folder(tmp_path / "root" / "nnInteractive_v2.0")
    folder, problems = find_model_folder(tmp_path / "root")
    assert folder is None and "several nnInteractive models (nnInteractive_v1.0, nnInteractive_v2.0)" in problems[0]


def test_a_missing_package_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("nnInteractive") else real(name, *a))
    folder = _model_folder(tmp_path / "m")
    missing = NNInteractiveModel.requirements(weights=folder)
    assert missing == ["Python module 'nnInteractive' is not installed (pip install \"nfbench[nninteractive]\")"]
    with pytest.raises(ModelError, match=r"nfbench\[nninteractive\]"):
        NNInteractiveModel(weights=folder)


# -- the real package ----------------------------------------------------------------------------------
PATCH = 64  # the package's refinement keeps a 24-voxel margin per side: a patch must exceed 48


def tiny_model_folder(root: Path) -> Path:
    """A model folder in the package's trained-model layout holding a randomly initialised two-stage
    nnU-Net (8 input channels: image + 7 interaction channels) whose output layer always answers
    foreground, so a prediction fills exactly its 64³ window (clipped to the image)."""
    torch = pytest.importorskip("torch")
    from nnInteractive.trainer.nnInteractiveTrainer import nnInteractiveTrainer_stub
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    architecture = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
            "n_conv_per_stage_decoder": [1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    plans = {"dataset_name": "Dataset999_tiny", "plans_name": "tiny", "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "label_manager": "LabelManager",
             "configurations": {"3d_tiny": {
                 "patch_size": [PATCH] * 3, "spacing": [1.0] * 3, "data_identifier": "tiny", "batch_size": 1,
                 "preprocessor_name": "DefaultPreprocessor", "normalization_schemes": ["ZScoreNormalization"],
                 "use_mask_for_norm": [False], "architecture": architecture}}}
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "object": 1}, "numTraining": 1,
               "file_ending": ".nii.gz"}
    (root / "fold_0").mkdir(parents=True)
    (root / "plans.json").write_text(json.dumps(plans))
    (root / "dataset.json").write_text(json.dumps(dataset))
    (root / "inference_session_class.json").write_text(json.dumps({"point_radius": 2}))
    manager = PlansManager(plans)
    torch.manual_seed(0)
    network = nnInteractiveTrainer_stub.build_network_architecture(
        manager, manager.get_configuration("3d_tiny"), 8, 2, enable_deep_supervision=False)
    weights = network.state_dict()
    head = [k for k in weights if k.startswith("decoder.seg_layers.")]
    for key in head:
        weights[key] = torch.zeros_like(weights[key])
    weights[next(k for k in head if k.endswith("bias"))] = torch.tensor([-1.0, 1.0])
    torch.save({"trainer_name": "nnInteractiveTrainer_stub", "init_args": {"configuration": "3d_tiny"},
                "network_weights": weights}, root / "fold_0" / "checkpoint_final.pth")
    return root


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    pytest.importorskip("nnInteractive.inference.inference_session")
    return tiny_model_folder(tmp_path_factory.mktemp("nninteractive") / "nnInteractive_tiny")


@pytest.mark.parametrize("axis_order", ["ijk", "kji"])
def test_the_real_package_answers_its_window_around_each_prompt(tiny_folder, one_torch_thread, axis_order):
    assert NNInteractiveModel.requirements(weights=tiny_folder.parent) == []
    model = NNInteractiveModel(weights=tiny_folder.parent, autozoom=False, threads=1, axis_order=axis_order)
    assert model.folder == tiny_folder and model.license == "!!MISSING!!"  # no LICENSE file in the folder
    assert model.package_session.device.type == "cpu" and not model.package_session.do_autozoom
    shape = (100, 12, 30)
    data = np.random.default_rng(1).normal(100, 20, shape)
    session = model.start(_volume(data, (1.0, 7.8, 1.0)))
    session.add_click(Click((80, 6, 15), True))
    answer = check_prediction("nninteractive", session.predict(), shape)
    half = PATCH // 2
    assert answer.box == (slice(80 - half, 100), slice(0, 12), slice(0, 30)) and answer.mask.all()
    session.reset()
    assert not session.target.any()
    session.add_box(Box((10, 5, 4), (30, 6, 20)))  # centre (20, 6, 12) after the package's rounding
    answer = check_prediction("nninteractive", session.predict(), shape)
    assert answer.box == (slice(0, 20 + half), slice(0, 12), slice(0, 30)) and answer.mask.all()


def test_the_real_package_runs_through_the_engine_with_boxes(tiny_folder, one_torch_thread):
    image, instances, lesions = tiny_case(2)
    model = NNInteractiveModel(weights=tiny_folder, autozoom=False, threads=1)
    scenario = scenario_from_options("lesion-corrective", lesions=2, interactions=2, boxes=True)
    result = run(model, scenario, image, instances, lesions)
    assert [r.n_boxes for r in result.interactions] == [1, 0, 1, 0]
    assert all(np.isfinite(r.latency_ms) for r in result.interactions)
    assert all(0.0 <= r.dice_lesion <= 1.0 for r in result.interactions)
    assert result.prediction.shape == image.shape and result.prediction.any()  # its windows, foreground


def test_the_real_package_refusing_an_image_is_a_model_error_and_the_model_goes_on(tiny_folder, one_torch_thread):
    model = NNInteractiveModel(weights=tiny_folder, autozoom=False, threads=1)
    with pytest.raises(ModelError, match="refused the image: Input image is entirely zero"):
        model.start(_volume(np.zeros((70, 12, 30))))
    session = model.start(_volume(np.random.default_rng(2).normal(100, 20, (70, 12, 30))))
    session.add_click(Click((35, 6, 15), True))
    assert check_prediction("nninteractive", session.predict(), (70, 12, 30)).mask.any()


def _real_weights() -> Path | None:
    if not os.environ.get(MODEL_DIR_ENV) or importlib.util.find_spec("nnInteractive") is None:
        return None
    return find_model_folder(None)[0]


@pytest.mark.skipif(_real_weights() is None,
                    reason=f"needs the nninteractive package and the released weights in ${MODEL_DIR_ENV}")
def test_the_released_weights_segment_a_bright_ball_from_one_click():
    shape, centre, radius = (64, 24, 64), (32, 12, 32), 6
    grid = np.indices(shape).astype(np.float32)
    distance = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, (1.0, 2.5, 1.0))))
    truth = distance <= radius
    data = np.where(truth, 400.0, 100.0) + np.random.default_rng(0).normal(0, 10, shape)
    model = NNInteractiveModel(device="auto")
    session = model.start(_volume(data, (1.0, 2.5, 1.0)))
    session.add_click(Click(centre, True))
    answer = check_prediction("nninteractive", session.predict(), shape)
    mask = np.zeros(shape, bool)
    mask[answer.box] = answer.mask
    dice = 2 * np.count_nonzero(mask & truth) / (np.count_nonzero(mask) + np.count_nonzero(truth))
    assert dice > 0.7, dice

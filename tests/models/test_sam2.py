"""`sam2`: checkpoints (SAM2's format, the original's folder), the frame layout both ways, prompts and
propagation, the per-case feature cache, and sessions through the engine."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nfbench.interaction.boxes import largest_slice_box
from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, check_prediction
from nfbench.types import Box, Click
from tests.engine import run, tiny_case

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from nfbench.models import sam2 as sam2_model  # noqa: E402
from nfbench.models.sam2 import INSTALL_HINT, SAM2Model  # noqa: E402

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SIZE = 128
TINY = {"config": TINY_CONFIG, "image_size": SIZE}
TIMING = {"latency_ms", "overhead_ms"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _released_network():
    """A random tiny SAM 2.1 built by the sam2 package itself, as SAM2's own tools would."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    return build_sam2(TINY_CONFIG, None, device="cpu", mode="eval", hydra_overrides_extra=[f"++model.image_size={SIZE}"])


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The tiny network's state dict, saved as SAM2 releases checkpoints (``{"model": ...}``)."""
    state = _released_network().state_dict()
    path = tmp_path_factory.mktemp("sam2") / "tiny.pt"
    torch.save({"model": state}, path)
    return path, state


def _same_weights(model: SAM2Model, state) -> bool:
    loaded = model.network.state_dict()
    return sorted(loaded) == sorted(state) and all(torch.equal(loaded[k], v) for k, v in state.items())


def test_released_format_loads_strictly(released):
    path, state = released
    model = SAM2Model(path, **TINY)
    assert _same_weights(model, state) and not model.network.training
    assert model.capabilities == {"click", "box"}


def test_the_original_folder_layout_brings_its_yaml(released, tmp_path):
    import sam2

    path, state = released
    fold = tmp_path / "SAM2" / "fold_1"
    fold.mkdir(parents=True)
    shutil.copy(path, fold / "checkpoint.pt")
    yaml = Path(sam2.__file__).parent / TINY_CONFIG
    shutil.copy(yaml, fold / "sam2.1_hiera_t.yaml")
    model = SAM2Model(fold, image_size=SIZE)  # no config: the folder's yaml
    assert model.config == str(fold / "sam2.1_hiera_t.yaml")
    assert _same_weights(model, state)
    with pytest.raises(ModelError, match="does not fit"):  # the default config (base+) does not fit tiny weights
        SAM2Model(path, image_size=SIZE)
    (fold / "other.yaml").write_text("model: {}\n")
    with pytest.raises(ModelError, match="several yaml"):
        SAM2Model(fold, image_size=SIZE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no checkpoint.pt"):
        SAM2Model(empty, **TINY)


def test_a_renamed_key_is_named_with_the_file(released, tmp_path):
    _, state = released
    key = "sam_mask_decoder.iou_token.weight"
    broken = dict(state)
    broken["renamed.weight"] = broken.pop(key)
    bad = tmp_path / "renamed.pt"
    torch.save({"model": broken}, bad)
    with pytest.raises(ModelError, match=rf"{key}.*renamed.weight") as info:
        SAM2Model(bad, **TINY)
    assert str(bad) in str(info.value) and "'sam2'" in str(info.value)


def test_options_and_requirements(released, tmp_path, monkeypatch):
    path, _ = released
    with pytest.raises(ValueError, match="orientation"):
        SAM2Model(path, orientation="sideways", **TINY)
    with pytest.raises(ValueError, match="image_size"):
        SAM2Model(path, config=TINY_CONFIG, image_size=100)
    with pytest.raises(ValueError, match="needs weights"):
        SAM2Model(**TINY)
    with pytest.raises(ValueError, match="no weights"):
        SAM2Model(path, init="random", **TINY)
    with pytest.raises(ValueError, match="no configuration 'nope.yaml'"):
        SAM2Model(init="random", config="nope.yaml", image_size=SIZE)
    assert SAM2Model.requirements(weights=path) == []
    assert SAM2Model.requirements(init="random") == []
    assert "does not exist" in SAM2Model.requirements(weights=tmp_path / "missing.pt")[0]
    assert "checkpoint" in SAM2Model.requirements(weights=tmp_path)[0]
    monkeypatch.setattr(sam2_model, "missing_modules", lambda *names, **_: list(names) if "sam2" in names else [])
    assert SAM2Model.requirements(init="random") == [f"Python module 'sam2' is not installed ({INSTALL_HINT})"]
    assert "SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps sam2" in INSTALL_HINT


# -- the frame layout --------------------------------------------------------------------------------
def _volume(shape, spacing, rng=0) -> Volume:
    data = np.random.default_rng(rng).uniform(1.0, 100.0, shape).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    return Volume(data, affine, affine.copy(), nib.Nifti1Header())


class _KnownTracker:
    """Stands in for ``track_step``: answers ``logits`` on frame ``target``, nothing elsewhere, and records calls."""

    def __init__(self, target: int, logits, present=()):
        self.target, self.logits, self.present, self.calls = target, logits, set(present), []

    def __call__(self, *, frame_idx, is_init_cond_frame, point_inputs, output_dict, track_in_reverse, **_):
        self.calls.append({"frame": frame_idx, "init": is_init_cond_frame, "reverse": track_in_reverse,
                           "points": None if point_inputs is None else point_inputs["point_coords"][0].tolist(),
                           "labels": None if point_inputs is None else point_inputs["point_labels"][0].tolist(),
                           "memory": sorted(output_dict["non_cond_frame_outputs"]),
                           "cond": sorted(output_dict["cond_frame_outputs"])})
        logits = self.logits if frame_idx == self.target else torch.full_like(self.logits, -10.0)
        score = torch.full((1, 1), 1.0 if frame_idx in self.present else -1.0)
        return {"maskmem_features": None, "maskmem_pos_enc": None, "pred_masks": logits, "obj_ptr": None,
                "object_score_logits": score}


@pytest.mark.parametrize("orientation", ["nfbench", "original"])
def test_a_mask_of_frame_k_lands_on_slice_k_in_the_right_orientation(orientation, monkeypatch):
    """A known asymmetric low-resolution mask on frame 3, mapped back by hand (not through FrameStack)."""
    from torch.nn import functional as F

    shape, frame = (20, 5, 36), 3  # R-L 20, A-P 5 (thick), I-S 36
    image = _volume(shape, (1.0, 5.0, 1.0))
    torch.manual_seed(0)
    model = SAM2Model(init="random", orientation=orientation, fill_hole_area=0, **TINY)
    logits = torch.full((1, 1, SIZE // 4, SIZE // 4), -10.0)
    logits[..., 2:6, 1:20] = 10.0  # a wide bar near the top-left corner of the model frame
    tracker = _KnownTracker(frame, logits)
    monkeypatch.setattr(model.network, "track_step", tracker)
    session = model.start(image)
    i, k = 4, 30
    session.add_click(Click((i, frame, k), True))
    answer = check_prediction("sam2", session.predict(), shape)
    full = np.zeros(shape, bool)
    full[answer.box] = answer.mask

    if orientation == "nfbench":  # rows: superior first; columns: the patient's right first
        rows, columns, row, column = shape[2], shape[0], shape[2] - 1 - k, shape[0] - 1 - i
    else:  # the RSA volume's [:, :, A]: rows along R (from the left), columns along S (from inferior)
        rows, columns, row, column = shape[0], shape[2], i, k
    x, y = tracker.calls[0]["points"][0]
    assert tracker.calls[0]["frame"] == frame and tracker.calls[0]["labels"] == [1]
    assert (x, y) == pytest.approx(((column + 0.5) * SIZE / columns - 0.5, (row + 0.5) * SIZE / rows - 0.5))
    plane = (F.interpolate(logits, size=(rows, columns), mode="bilinear", align_corners=False)[0, 0] > 0).numpy()
    expected = np.zeros(shape, bool)
    for r, c in np.argwhere(plane):
        if orientation == "nfbench":
            expected[shape[0] - 1 - c, frame, shape[2] - 1 - r] = True
        else:
            expected[r, frame, c] = True
    assert expected.any() and not expected[:, [f for f in range(shape[1]) if f != frame]].any()
    np.testing.assert_array_equal(full, expected)
    # the answer is the mask's box, not the whole volume
    assert answer.box[1] == slice(frame, frame + 1) and answer.mask.size < full.size / 10


@pytest.mark.parametrize("orientation", ["nfbench", "original"])
def test_the_network_sees_the_frame_as_the_clicks_do(orientation):
    """A ramp along I-S: nfbench frames darken downwards (superior on top); the original's to the left
    (columns from inferior); both ImageNet-normalised from 0-255 frames of the percentile window."""
    from nfbench.models.blocks.frames import IMAGENET_MEAN, IMAGENET_STD

    shape = (20, 4, 36)
    data = np.broadcast_to(np.arange(1, 37, dtype=np.float32), shape).copy()
    affine = np.diag([1.0, 5.0, 1.0, 1.0])
    torch.manual_seed(0)
    session = SAM2Model(init="random", orientation=orientation, **TINY).start(
        Volume(data, affine, affine.copy(), nib.Nifti1Header()))
    images = session._images(2)
    assert images.shape == (1, 3, SIZE, SIZE)
    grey = (images[0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).numpy() * 255  # back to 0-255
    profile = grey.mean(axis=1) if orientation == "nfbench" else grey.mean(axis=0)  # along rows / columns
    steps = np.diff(profile[4:-4])
    if orientation == "nfbench":
        assert (steps < 0).all()  # superior (bright) at the top
    else:
        assert (steps > 0).all()  # inferior (dark) on the left
    assert profile.min() < 20 and profile.max() > 235  # the 0.5-99.5 percentile window, nearly 0-255
    across = grey.mean(axis=0) if orientation == "nfbench" else grey.mean(axis=1)
    assert np.ptp(across[4:-4]) < 3  # no change along the other axis (JPEG included)


@pytest.mark.parametrize("orientation", ["nfbench", "original"])
def test_a_box_is_its_corner_pixels_on_its_frame(orientation, monkeypatch):
    shape, frame = (20, 5, 36), 2
    torch.manual_seed(0)
    model = SAM2Model(init="random", orientation=orientation, **TINY)
    tracker = _KnownTracker(frame, torch.full((1, 1, SIZE // 4, SIZE // 4), -10.0))
    monkeypatch.setattr(model.network, "track_step", tracker)
    session = model.start(_volume(shape, (1.0, 5.0, 1.0)))
    session.add_box(Box((3, frame, 10), (9, frame + 1, 31)))  # i in 3..8, k in 10..30
    session.add_click(Click((5, frame, 20), False))
    session.predict()
    call = tracker.calls[0]
    assert call["frame"] == frame and call["labels"] == [2, 3, 0]
    if orientation == "nfbench":
        rows, columns, (r0, r1), (c0, c1) = shape[2], shape[0], (35 - 30, 35 - 10), (19 - 8, 19 - 3)
    else:
        rows, columns, (r0, r1), (c0, c1) = shape[0], shape[2], (3, 8), (10, 30)

    def point(r, c):
        return pytest.approx([(c + 0.5) * SIZE / columns - 0.5, (r + 0.5) * SIZE / rows - 0.5])

    assert call["points"][0] == point(r0, c0) and call["points"][1] == point(r1, c1)
    with pytest.raises(ModelError, match="2D boxes on one frame"):
        session.add_box(Box((3, 1, 10), (9, 3, 31)))


def test_every_frame_is_tracked_from_its_nearest_prompt_and_reset_starts_over(monkeypatch):
    torch.manual_seed(0)
    model = SAM2Model(init="random", **TINY)
    tracker = _KnownTracker(-1, torch.full((1, 1, SIZE // 4, SIZE // 4), -10.0))
    monkeypatch.setattr(model.network, "track_step", tracker)
    session = model.start(_volume((12, 10, 14), (1.0, 4.0, 1.0)))
    session.add_click(Click((3, 2, 4), True))
    session.add_click(Click((5, 7, 4), True))
    session.predict()
    calls = [(c["frame"], c["init"], c["reverse"], c["memory"]) for c in tracker.calls]
    assert calls == [
        (2, True, False, []), (7, True, False, []),  # the prompted frames first: new objects there
        (1, False, True, []), (0, False, True, [1]),  # backward from 2
        (3, False, False, []), (4, False, False, [3]),  # forward from 2 (4 is as near to 2 as to 7: the earlier)
        (6, False, True, []), (5, False, True, [6]),  # backward from 7
        (8, False, False, []), (9, False, False, [8]),  # forward from 7
    ]
    assert all(c["cond"] == [2, 7] for c in tracker.calls[2:])
    assert sorted(session.tracked) == list(range(10))

    tracker.calls.clear()
    session.add_click(Click((3, 4, 4), False))  # a correction on a tracked frame: with memory, not a new object
    session.predict()
    first = tracker.calls[0]
    assert (first["frame"], first["init"], first["reverse"], first["cond"]) == (4, False, False, [2, 7])
    assert len(tracker.calls) == 1 + 7 and {c["frame"] for c in tracker.calls[1:]} == set(range(10)) - {2, 4, 7}

    session.reset()
    tracker.calls.clear()
    session.add_click(Click((3, 5, 4), True))
    session.predict()
    assert tracker.calls[0]["frame"] == 5 and tracker.calls[0]["init"] and tracker.calls[0]["cond"] == []
    assert [c["frame"] for c in tracker.calls[1:]] == [4, 3, 2, 1, 0, 6, 7, 8, 9]
    assert session.encoded == 10  # every frame encoded once for the whole session


def test_stop_absent_ends_a_run_after_frames_without_the_object(monkeypatch):
    torch.manual_seed(0)
    model = SAM2Model(init="random", stop_absent=2, **TINY)
    tracker = _KnownTracker(-1, torch.full((1, 1, SIZE // 4, SIZE // 4), -10.0), present={3, 4, 5})
    monkeypatch.setattr(model.network, "track_step", tracker)
    session = model.start(_volume((12, 10, 14), (1.0, 4.0, 1.0)))
    session.add_click(Click((3, 4, 4), True))
    session.predict()
    assert [c["frame"] for c in tracker.calls] == [4, 3, 2, 1, 5, 6, 7]  # two absent frames end each run
    assert sorted(session.tracked) == [1, 2, 3, 4, 5, 6, 7]
    tracker.calls.clear()
    session.add_click(Click((3, 9, 4), True))  # a frame never tracked: a new conditioning frame
    session.predict()
    assert (tracker.calls[0]["frame"], tracker.calls[0]["init"]) == (9, True)
    with pytest.raises(ValueError, match="stop_absent"):
        SAM2Model(init="random", stop_absent=-1, **TINY)


# -- the real tiny network ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom():
    return tiny_case(n_lesions=3)


def _prompts(instances, lesions):
    """A click and a correction on one lesion, a reset, a box and a click on another."""
    first, second = (np.argwhere(instances == lesion.lesion_id) for lesion in lesions[:2])
    return [("click", Click(tuple(int(v) for v in first[len(first) // 2]), True)),
            ("click", Click(tuple(int(v) for v in first[0]), False)),
            ("reset", None),
            ("box", largest_slice_box(instances, lesions[1])),
            ("click", Click(tuple(int(v) for v in second[-1]), True))]


def _replay(session, shape, steps):
    """Every answer of the session assembled onto the previous one, and checked against the whole
    mask rebuilt from the session's per-frame logits."""
    from torch.nn import functional as F

    mask, answers, logits = np.zeros(shape, bool), [], []
    for kind, prompt in steps:
        if kind == "reset":
            session.reset()
            mask[:] = False
            continue
        (session.add_click if kind == "click" else session.add_box)(prompt)
        answer = check_prediction("sam2", session.predict(), shape)
        mask[answer.box] = answer.mask
        stack = session.view.stack
        low = torch.cat([session.tracked[f][0]["pred_masks"] for f in range(stack.n_frames)])
        planes = (F.interpolate(low, size=stack.frame_shape, mode="bilinear", align_corners=False)[:, 0] > 0).numpy()
        np.testing.assert_array_equal(mask, stack.to_volume(planes))
        answers.append(mask.copy())
        logits.append(low)
    return answers, logits


def test_the_feature_cache_gives_the_same_masks_and_encodes_each_frame_once(phantom):
    image, instances, lesions = phantom
    steps = _prompts(instances, lesions)
    results, sessions = [], []
    for cache in (True, False):
        torch.manual_seed(0)
        session = SAM2Model(init="random", cache_features=cache, **TINY).start(image)
        results.append(_replay(session, image.shape, steps))
        sessions.append(session)
    cached, uncached = sessions
    n = cached.n_frames
    assert cached.encoded == n  # once per frame for the case, across lesions and interactions
    assert uncached.encoded >= 4 * n  # every visited frame at every interaction
    (masks, logits), (masks_without, logits_without) = results
    assert len(masks) == 4 and all(a.any() for a in masks)
    for with_cache, without in zip(masks, masks_without):
        np.testing.assert_array_equal(with_cache, without)
    assert all(torch.equal(a, b) for a, b in zip(logits, logits_without))  # bit for bit


@pytest.mark.parametrize("scenario", [
    scenario_from_options("lesion-corrective", interactions=2, stop_dice=None, lesions=2),
    scenario_from_options("lesion-corrective", preset="cvpr25", interactions=2, lesions=2),
], ids=["clicks", "box-then-clicks"])
def test_sessions_run_through_the_engine_deterministically(phantom, scenario):
    image, instances, lesions = phantom
    torch.manual_seed(0)
    model = SAM2Model(init="random", **TINY)
    first = run(model, scenario, image, instances, lesions, seed=4)
    assert len(first.interactions) == 2 * min(2, len(lesions)) and first.clicks
    assert all(0 <= r.dice_lesion <= 1 for r in first.interactions)
    assert first.prediction is not None and first.prediction.shape == image.shape
    again = run(model, scenario, image, instances, lesions, seed=4)
    untimed = [{k: v for k, v in asdict(r).items() if k not in TIMING} for r in first.interactions]
    assert untimed == [{k: v for k, v in asdict(r).items() if k not in TIMING} for r in again.interactions]
    np.testing.assert_array_equal(first.prediction, again.prediction)

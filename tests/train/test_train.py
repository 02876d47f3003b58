"""`nfbench.train`: a few steps learn, a killed run resumes to the same weights, checkpoints reload."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.io.dataset import discover_dataset
from nfbench.io.splits import read_fold
from nfbench.models.registry import load_model
from nfbench.train import METRICS, TrainConfig, TrainError, train
from nfbench.train.data import PatchSampler, load_grid_case
from nfbench.train.recipes import recipe_for

# Tiny networks on the tiny phantom's own grid (7.5 × 7.5 × 15.6 mm along R, S, A / S, R, A).
SWF = {"filters": "4,8,16,16,32,32", "roi_size": "32,64,16", "spacing": "7.5,7.5,15.6"}
DINS = {"base_filters": 4, "max_filters": 16, "roi": "32,32,4", "spacing": "7.5,7.5,15.6"}


def _config(data: Path, out: Path, model: str = "sw-fastedit", **changes) -> TrainConfig:
    settings = dict(model=model, data=data, fold=1, out=out, epochs=2, steps_per_epoch=2, batch_size=2,
                    options=SWF if model == "sw-fastedit" else DINS, interactions=2, val_lesions=2,
                    val_interactions=2, val_patches=2, device="cpu", seed=3)
    return TrainConfig(**{**settings, **changes})


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _sampler(data: Path, model: str, options: dict):
    recipe = recipe_for(model, options, interactions=2)
    cases = [load_grid_case(c, recipe.prepare) for c in discover_dataset(data).subset("imagesTr")]
    return recipe, PatchSampler(cases, recipe.patch_size, lesion_rate=1.0)


@pytest.mark.parametrize(("model", "options", "lr"), [("sw-fastedit", SWF, 3e-3), ("dins", DINS, 3e-3)])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(fold_dataset, model, options, lr):
    recipe, sampler = _sampler(fold_dataset, model, options)
    torch.manual_seed(0)
    network = recipe.build_network()
    patches = [sampler.draw(np.random.default_rng(s)) for s in range(2)]
    assert all(p.truth.any() for p in patches)  # lesion_rate 1: every patch holds lesion voxels
    inputs, target = recipe.batch(patches, network, np.random.default_rng(0), torch.device("cpu"))
    optimizer = recipe.optimizer(network, lr)
    losses = []
    for _ in range(8):
        loss = recipe.loss(network(*inputs), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.9 * losses[0]


class _Background(torch.nn.Module):
    """A network that finds nothing: every simulated correction is a positive click on a missed lesion."""

    def forward(self, x):
        return torch.stack([torch.ones_like(x[:, 0]), torch.zeros_like(x[:, 0])], dim=1)


def test_sw_fastedit_clicks_are_simulated_on_the_error(fold_dataset):
    recipe, sampler = _sampler(fold_dataset, "sw-fastedit", SWF)
    patches = [sampler.draw(np.random.default_rng(s)) for s in range(6)]
    (inputs,), target = recipe.batch(patches, _Background(), np.random.default_rng(1), torch.device("cpu"))
    assert inputs.shape == (6, 3, *recipe.patch_size) and target.shape == (6, 1, *recipe.patch_size)
    assert np.array_equal(inputs[:, 0].numpy(), np.stack([p.image for p in patches]))
    positive, negative = inputs[:, 1].numpy() > 0, inputs[:, 2].numpy() > 0
    truth = target[:, 0].numpy() > 0
    assert not negative.any()  # nothing predicted, nothing to remove
    clicked = [i for i in range(6) if positive[i].any()]
    assert 0 < len(clicked) < 6  # U{0..2} rounds: some samples get none
    for i in clicked:
        assert (positive[i] & truth[i]).any()  # each ball sits on a missed lesion voxel
        assert set(np.unique(inputs[i, 1].numpy())) == {0.0, 1.0}


def test_sw_fastedit_clicked_target_is_the_prompted_lesion_alone(fold_dataset):
    recipe = recipe_for("sw-fastedit", SWF, interactions=2, target="clicked")
    cases = [load_grid_case(c, recipe.prepare) for c in discover_dataset(fold_dataset).subset("imagesTr")]
    on_lesions = PatchSampler(cases, recipe.patch_size, lesion_rate=1.0, flip_rate=0.5)
    patches = [on_lesions.draw(np.random.default_rng(s)) for s in range(8)]
    (inputs,), target = recipe.batch(patches, _Background(), np.random.default_rng(1), torch.device("cpu"))
    truth, positive = target[:, 0].numpy() > 0, inputs[:, 1].numpy() > 0
    for i, patch in enumerate(patches):
        assert np.array_equal(truth[i], patch.centred) and truth[i].any()
        assert (positive[i] & truth[i]).any()  # the first click prompts it, even with no corrective round
    assert any((p.truth & ~p.centred).any() for p in patches)  # another lesion in the patch is background
    with pytest.raises(ValueError, match="target must be one of all, clicked"):
        recipe_for("sw-fastedit", SWF, target="every")


def test_a_patch_knows_the_one_lesion_under_its_centre(fold_dataset):
    from nfbench.models.blocks.grids import cut, window_around

    recipe = recipe_for("sw-fastedit", SWF)
    cases = {c.name: c for c in (load_grid_case(c, recipe.prepare) for c in discover_dataset(fold_dataset).subset("imagesTr"))}
    for rate in (1.0, 0.0):
        sampler = PatchSampler(list(cases.values()), recipe.patch_size, lesion_rate=rate)
        for s in range(6):
            patch = sampler.draw(np.random.default_rng(s))
            case = cases[patch.case]
            labels = cut(case.label, window_around(patch.centre, recipe.patch_size, case.label.shape))
            lesion = case.label[patch.centre]
            np.testing.assert_array_equal(patch.centred, (labels == lesion) & (lesion > 0))
            assert rate == 0.0 or patch.centred.any()


def test_dins_clicks_follow_the_original_rules(fold_dataset):
    recipe, sampler = _sampler(fold_dataset, "dins", DINS)
    rng = np.random.default_rng(5)
    seen_negative = False
    for _ in range(20):
        truth = sampler.draw(rng).truth
        clicks = recipe.clicks(truth, rng)
        positives = [c for c, p in clicks if p]
        negatives = [c for c, p in clicks if not p]
        assert 1 <= len(positives) <= recipe.max_positive and len(negatives) <= recipe.max_negative
        assert all(truth[c] for c in positives)
        assert not any(truth[c] for c in negatives)
        seen_negative |= bool(negatives)
        for a in range(len(clicks)):
            for b in range(a + 1, len(clicks)):
                (p, pa), (q, pb) = clicks[a], clicks[b]
                if p[2] == q[2] and np.hypot(p[0] - q[0], p[1] - q[1]) < recipe.min_gap:
                    assert pa and pb  # only the centroids of two tiny lesions may sit closer
    assert seen_negative


def test_dins_per_lesion_positive_clicks_reach_small_lesions_beside_a_large_one():
    truth = np.zeros((64, 32, 10), bool)
    truth[10:30, 5:25, 2:8] = True  # a large lesion: interior left after the 3-voxel erosion
    truth[50, 28, 5] = True  # two small ones, thinner than the erosion
    truth[40:42, 3, 3] = True
    labels = np.zeros(truth.shape, int)
    labels[10:30, 5:25, 2:8], labels[50, 28, 5], labels[40:42, 3, 3] = 1, 2, 3
    options = {**DINS, "roi": "64,32,10"}
    clicked = {}
    for mode in ("original", "per-lesion"):
        recipe, rng = recipe_for("dins", options, positive_clicks=mode), np.random.default_rng(0)
        counts = np.zeros(4, int)
        for _ in range(100):
            for index, positive in recipe.clicks(truth, rng):
                if positive:
                    counts[labels[index]] += 1
        clicked[mode] = counts
    assert clicked["original"][0] == 0 and clicked["per-lesion"][0] == 0  # positives on lesions only
    assert clicked["original"][1] > 0 and clicked["original"][2:].sum() == 0  # the original: the large one only
    assert (clicked["per-lesion"][1:] > 20).all()  # per lesion: each of the three, often
    with pytest.raises(ValueError, match="positive clicks"):
        recipe_for("dins", DINS, positive_clicks="everywhere")


def test_dins_small_lesion_boost_weighs_a_one_voxel_lesion_as_the_square_root_of_its_rarity():
    target = torch.zeros(1, 4, 32, 32, dtype=torch.int64)  # (B, A, S, R)
    target[0, 1:4, 5:10, 5:10] = 1  # 75 voxels: sqrt(25 / 75) < 1, no boost
    target[0, 2, 20, 20] = 1  # one voxel: boost sqrt(25 / 1) = 5
    logits = torch.stack([1.0 - 2.0 * target, 2.0 * target - 1.0], dim=-1).float() * 8  # right everywhere...
    logits[0, 2, 20, 20] = torch.tensor([4.0, -4.0])  # ...but the one-voxel lesion
    plain, boosted = (recipe_for("dins", DINS, small_lesion_boost=b).loss(logits, target).item() for b in (0, 25))
    total = target.numel() + 2 * int(target.sum())  # the original weights: 1 background, 3 lesion
    correct_loss = float(torch.nn.functional.softplus(torch.tensor(-16.0)))  # cross-entropy of a right voxel
    assert boosted > 4 * plain  # the one error counts five times as much, against a slightly larger total weight
    ratio = (boosted - correct_loss) / (plain - correct_loss)
    assert ratio == pytest.approx(5 * total / (total + 3 * 4), rel=1e-3)
    with pytest.raises(ValueError, match="small lesion boost"):
        recipe_for("dins", DINS, small_lesion_boost=-1)


@pytest.mark.parametrize(("model", "setting", "message"), [
    ("sw-fastedit", {"positive_clicks": "per-lesion"}, "positive clicks 'per-lesion': sw-fastedit has no such setting"),
    ("sw-fastedit", {"small_lesion_boost": 10.0}, "small lesion boost 10.0: sw-fastedit has no such setting"),
    ("dins", {"target": "clicked"}, r"target 'clicked': dins has no such setting \(sw-fastedit has\)"),
])
def test_model_only_settings_are_refused_for_other_models(fold_dataset, tmp_path, model, setting, message):
    with pytest.raises(TrainError, match=message):
        train(_config(fold_dataset, tmp_path / "run", model=model, **setting), quiet=True)


def test_dins_guide_sigma_option_shapes_the_training_guides(fold_dataset):
    from nfbench.models.dins import guide_channels

    _, sampler = _sampler(fold_dataset, "dins", DINS)
    patches = [sampler.draw(np.random.default_rng(s)) for s in range(2)]
    sharp = recipe_for("dins", {**DINS, "guide_sigma": "2,2,1"})
    (_, guide), _ = sharp.batch(patches, _Background(), np.random.default_rng(4), torch.device("cpu"))
    replay = np.random.default_rng(4)
    clicks = [sharp.clicks(p.truth, replay) for p in patches]
    for sigma, same in (((2.0, 2.0, 1.0), True), ((5.0, 5.0, 1.0), False)):
        expected = np.stack([guide_channels(sharp.roi, c, sigma) for c in clicks]).transpose(0, 4, 2, 3, 1)
        assert np.array_equal(guide.numpy(), expected) == same


class _Everything(torch.nn.Module):
    """A DINs stand-in that marks every voxel: every simulated correction is a negative click."""

    def forward(self, image, guide):
        ones = torch.ones_like(image[..., 0])
        return torch.stack([torch.zeros_like(ones), ones], dim=-1)


def test_dins_corrective_rounds_are_off_by_default_and_add_clicks_on_the_error(fold_dataset):
    from nfbench.models.dins import guide_channels

    _, sampler = _sampler(fold_dataset, "dins", DINS)
    patches = [sampler.draw(np.random.default_rng(s)) for s in range(6)]
    original = recipe_for("dins", DINS)
    assert original.interactions == 0
    rng = np.random.default_rng(2)
    (_, guide), _ = original.batch(patches, _Everything(), rng, torch.device("cpu"))
    replay = np.random.default_rng(2)
    expected = np.stack([guide_channels(original.roi, original.clicks(p.truth, replay)) for p in patches])
    assert np.array_equal(guide.numpy(), expected.transpose(0, 4, 2, 3, 1))  # the original's clicks only
    assert rng.random() == replay.random()  # and nothing else drawn

    corrective = recipe_for("dins", DINS, interactions=2)
    (_, guide), target = corrective.batch(patches, _Everything(), np.random.default_rng(2), torch.device("cpu"))
    added = guide.numpy()[..., 1] > expected.transpose(0, 4, 2, 3, 1)[..., 1]  # new negative guide voxels
    assert np.array_equal(guide.numpy()[..., 0], expected.transpose(0, 4, 2, 3, 1)[..., 0])  # no new positives
    changed = [i for i in range(6) if added[i].any()]
    assert 0 < len(changed) < 6  # U{0..2} rounds: some samples get none
    for i in changed:
        peak = np.unravel_index(np.argmax(np.where(added[i], guide.numpy()[i, ..., 1], 0)), added[i].shape)
        assert target.numpy()[i][peak] == 0  # each new negative click sits on a false-positive voxel


def test_sampler_weights_lesions_and_is_seeded(fold_dataset):
    _, sampler = _sampler(fold_dataset, "sw-fastedit", SWF)
    a = [sampler.centre(np.random.default_rng(9)) for _ in range(3)]
    _, again = _sampler(fold_dataset, "sw-fastedit", SWF)
    assert a == [again.centre(np.random.default_rng(9)) for _ in range(3)]
    rng = np.random.default_rng(0)
    for _ in range(10):
        index, voxel = sampler.centre(rng)
        assert sampler.cases[index].label.ravel()[voxel] > 0  # lesion_rate 1: always on a lesion


def test_training_writes_its_files_and_the_best_checkpoint_evaluates(fold_dataset, tmp_path):
    result = train(_config(fold_dataset, tmp_path / "run"), quiet=True, command="nfbench train test")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"train.json", "metrics.csv", "last.pt", "best.pt", "card.json"} <= files
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and list(rows[0]) == list(METRICS)
    assert all(0 <= float(r["val_dice_last"]) <= 1 for r in rows)
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["command"] == "nfbench train test" and card["fold"] == 1 and card["seed"] == 3
    assert card["validation"]["best_epoch"] in (1, 2) and card["weights"]["sha256"]
    assert card["options"]["filters"] == SWF["filters"]
    fold = read_fold(fold_dataset, 1)  # a reader sees which cases trained and which validated
    assert card["cases"] == {"train": list(fold.train), "val": list(fold.val)} and fold.train and fold.val
    model = load_model("sw-fastedit", weights=result.best, **SWF)  # strict load of our own output
    assert isinstance(torch.load(result.best, weights_only=True)["net"], dict)  # the original format
    assert model.network.state_dict().keys() == torch.load(result.best, weights_only=True)["net"].keys()


@pytest.mark.parametrize("model", ["sw-fastedit", "dins"])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(
        fold_dataset, tmp_path, kill_after_first_checkpoint, model):
    train(_config(fold_dataset, tmp_path / "straight", model, val_every=2), quiet=True)
    saves = kill_after_first_checkpoint(
        lambda: train(_config(fold_dataset, tmp_path / "resumed", model, val_every=2), quiet=True))
    assert saves == [1]  # killed right after the first epoch's checkpoint
    half = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert half["optimizer"]["state"]  # Adam's moments are in the checkpoint
    train(_config(fold_dataset, tmp_path / "resumed", model, val_every=2), resume=True, quiet=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for key in a["net"]:
        assert torch.equal(a["net"][key], b["net"][key]), key
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer"]["state"][i]["exp_avg"])
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    log = lambda run: drop(_rows(tmp_path / run / "metrics.csv"))  # noqa: E731
    assert log("straight") == log("resumed")


def test_a_run_killed_between_its_log_and_its_checkpoint_logs_each_epoch_once_and_keeps_its_command(
        fold_dataset, tmp_path, kill_after_first_checkpoint):
    out = tmp_path / "run"
    kill_after_first_checkpoint(lambda: train(_config(fold_dataset, out), quiet=True, command="nfbench train A"))
    with (out / "metrics.csv").open("a") as handle:  # epoch 2 logged, then killed before its last.pt
        handle.write("2,2,0.001,0.5,0.5,,,1,0.1\n")
    result = train(_config(fold_dataset, out), resume=True, quiet=True, command="nfbench train A --resume")
    assert [int(r["epoch"]) for r in _rows(out / "metrics.csv")] == [1, 2]
    assert result.card["command"] == "nfbench train A"  # the command that makes the run, not its resume


def test_a_run_stopped_before_its_first_epoch_ended_starts_again(fold_dataset, tmp_path, monkeypatch):
    from nfbench.train import loop

    out = tmp_path / "run"
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(loop, "_patch_loss", interrupted)  # Ctrl-C during the first epoch
    with pytest.raises(KeyboardInterrupt):
        train(_config(fold_dataset, out, epochs=1), quiet=True)
    assert (out / "train.json").exists() and not (out / "last.pt").exists()
    monkeypatch.undo()
    result = train(_config(fold_dataset, out, epochs=1), quiet=True)  # no "already holds a training run"
    assert result.card["epochs"] == 1 and not (out / "candidate.pt").exists()


def test_refusals_name_the_problem(fold_dataset, tmp_path, copy_of):
    out = tmp_path / "run"
    train(_config(fold_dataset, out, epochs=1), quiet=True)
    with pytest.raises(TrainError, match="already holds a training run"):
        train(_config(fold_dataset, out, epochs=1), quiet=True)
    with pytest.raises(TrainError, match=r"other settings \(seed\)"):
        train(_config(fold_dataset, out, epochs=1, seed=4), resume=True, quiet=True)
    with pytest.raises(TrainError, match="no training run to resume"):
        train(_config(fold_dataset, tmp_path / "empty"), resume=True, quiet=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("")
    with pytest.raises(TrainError, match="folder holds other files and no training run"):
        train(_config(fold_dataset, tmp_path / "notes"), quiet=True)
    with pytest.raises(TrainError, match=r"seed = -1 \(must be a whole number >= 0\)"):
        _config(fold_dataset, tmp_path / "neg", seed=-1)
    with pytest.raises(TrainError, match="fold_5/train_set.txt: no such fold file"):
        train(_config(fold_dataset, tmp_path / "f5", fold=5), quiet=True)
    assert not (tmp_path / "f5").exists()  # a refused run leaves no empty folder behind
    with pytest.raises(TrainError, match="has no option 'filtres'"):
        train(_config(fold_dataset, tmp_path / "typo", options={**SWF, "filtres": "1"}), quiet=True)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(TrainError, match="no such fold file"):
        train(_config(fold_dataset, tmp_path / "mine", fold=5), quiet=True)
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())  # the user's own folder stays
    with pytest.raises(TrainError, match="cannot train 'sphere'"):
        train(_config(fold_dataset, tmp_path / "sphere", model="sphere"), quiet=True)
    with pytest.raises(TrainError, match="steps_per_epoch = 0"):
        _config(fold_dataset, tmp_path / "zero", steps_per_epoch=0)
    data = copy_of(fold_dataset)
    val = data / "splits" / "fold_1" / "val_set.txt"
    train_list = (data / "splits" / "fold_1" / "train_set.txt").read_text()
    val.write_text(val.read_text() + train_list.splitlines()[0] + "\n")
    with pytest.raises(TrainError, match="in both train and val"):
        train(_config(data, tmp_path / "leak"), quiet=True)
    assert not (tmp_path / "leak").exists()


def test_validation_never_sees_training_cases(fold_dataset, tmp_path):
    train(_config(fold_dataset, tmp_path / "run", epochs=1), quiet=True)
    from nfbench.results.store import read_run_table

    validated = set(read_run_table(tmp_path / "run" / "validation", "cases")["case"])
    trained = set((fold_dataset / "splits" / "fold_1" / "train_set.txt").read_text().split())
    assert validated and not validated & trained


def test_cli_trains_dins_and_reports_the_best_epoch(fold_dataset, tmp_path):
    options = [x for k, v in DINS.items() for x in ("-o", f"{k}={v}")]
    result = CliRunner().invoke(app, ["train", "dins", "--data", str(fold_dataset), "--fold", "2", "--out",
                                      str(tmp_path / "run"), "--epochs", "1", "--steps-per-epoch", "2",
                                      "--val-lesions", "1", "--device", "cpu", "--quiet", *options])
    assert result.exit_code == 0, result.output
    assert "best epoch 1" in result.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["model"] == "dins"
    assert card["command"].startswith(f"nfbench train dins --data {fold_dataset} --fold 2 ")
    assert "--epochs 1 --steps-per-epoch 2" in card["command"] and "--model-option base_filters=4" in card["command"]
    load_model("dins", weights=tmp_path / "run" / "best.pt", **DINS)
    bad = CliRunner().invoke(app, ["train", "dins", "--data", str(fold_dataset), "--fold", "1", "--out",
                                   str(tmp_path / "run2"), "-o", "nokey"])
    assert bad.exit_code == 1 and "KEY=VALUE" in bad.output


@pytest.mark.parametrize("model", ["sw-fastedit", "dins"])
def test_fine_tuning_starts_from_a_checkpoint(fold_dataset, tmp_path, model):
    """``init`` takes the model's own weight file and our ``last.pt``; the first step starts from those weights."""
    first = train(_config(fold_dataset, tmp_path / "a", model, epochs=1), quiet=True)
    recipe = recipe_for(model, first.card["options"])
    for init in (first.best, tmp_path / "a" / "last.pt"):
        network = recipe.build_network()
        recipe.load_init(network, init)
        saved = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["net"]
        assert all(torch.equal(network.state_dict()[k], saved[k]) for k in saved)  # one epoch: best is last
    tuned = train(_config(fold_dataset, tmp_path / "b", model, epochs=1, init=tmp_path / "a" / "last.pt"), quiet=True)
    assert tuned.card["init"]["sha256"] and tuned.card["init"]["path"].endswith("last.pt")


def test_dins_plateau_schedule_cuts_the_rate_when_keras_would():
    # Keras' ReduceLROnPlateau(patience=30) cuts after the 30th epoch in a row without improvement
    # on the first: at the end of epoch 31 on a flat loss.
    recipe = recipe_for("dins", DINS)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    scheduler = recipe.scheduler(optimizer, 100)
    rates = []
    for _ in range(32):
        recipe.step_scheduler(scheduler, 1.0)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[29] == pytest.approx(3e-4) and rates[30] == pytest.approx(6e-5)

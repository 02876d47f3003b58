"""`nfbench train sam2`: clips pair frames with their lesion, a few steps learn, checkpoints reload in sam2, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("sam2")

from nfbench.cli import app  # noqa: E402
from nfbench.io.dataset import discover_dataset  # noqa: E402
from nfbench.io.volume import load_volume  # noqa: E402
from nfbench.lesions import instance_map  # noqa: E402
from nfbench.models.blocks.frames import FrameStack  # noqa: E402
from nfbench.train import TrainConfig, TrainError, train  # noqa: E402
from nfbench.train.data import load_grid_case  # noqa: E402
from nfbench.train.recipes import recipe_for  # noqa: E402
from nfbench.train.sam2_recipe import model_point  # noqa: E402

# The tiny SAM 2.1 (39 M parameters) on 128 × 128 frames: about a second per 3-frame clip on one core.
TINY = {"config": "configs/sam2.1/sam2.1_hiera_t.yaml", "image_size": 128}


def _recipe(**settings):
    return recipe_for("sam2", TINY, **{"interactions": 1, "frames": 3, **settings})


def _cases(data: Path, recipe):
    return [load_grid_case(c, recipe.prepare) for c in discover_dataset(data).subset("imagesTr")]


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    settings = dict(model="sam2", data=data, fold=1, out=out, epochs=2, steps_per_epoch=1, batch_size=1, frames=3,
                    options=TINY, interactions=1, val_patches=1, device="cpu", seed=3)
    return TrainConfig(**{**settings, **changes})


def test_clips_pair_the_frames_with_their_lesion_and_start_on_it(fold_dataset):
    recipe = _recipe(frames=4)
    case = discover_dataset(fold_dataset).subset("imagesTr")[0]
    image, label = load_volume(case.image), load_volume(case.label)
    stack = FrameStack.of(image.shape, image.spacing)
    frames, instances = stack.frames(np.asarray(image.data, np.float32)), instance_map(np.asarray(label.data))
    sampler = recipe.sampler([load_grid_case(case, recipe.prepare)], lesion_rate=0.6, training=True)
    directions, flipped = set(), 0
    for seed in range(12):
        clip = sampler.draw(np.random.default_rng(seed))
        step = clip.indices[1] - clip.indices[0]
        directions.add(step)
        assert np.array_equal(np.diff(clip.indices), [step] * 3) and abs(step) == 1
        flip = not all(np.array_equal(clip.frames[k], frames[n]) for k, n in enumerate(clip.indices))
        row, column = clip.click
        if flip:  # flipped left-right, frames, masks and click together
            flipped += 1
            assert all(np.array_equal(clip.frames[k], frames[n][:, ::-1]) for k, n in enumerate(clip.indices))
            column = clip.frames.shape[2] - 1 - column
        lesion = instances[stack.voxel(clip.indices[0], row, column)]
        assert lesion > 0 and clip.truth[0][clip.click]  # the first click is on the lesion, on the first frame
        truth = np.stack([stack.frame(instances, n) == lesion for n in clip.indices])
        assert np.array_equal(clip.truth, truth[:, :, ::-1] if flip else truth)  # that lesion, slice for slice
    assert directions == {-1, 1} and 0 < flipped < 12
    assert clip.spacing == (image.spacing[1], image.spacing[2], image.spacing[0])  # frame (A), row (S), column (R)


def test_model_point_is_the_pixel_centre_in_the_square_frame():
    assert model_point(0, 0, (100, 50), 100) == (0.5, 0.0)
    assert model_point(99, 49, (100, 50), 100) == (98.5, 99.0)


def test_two_steps_are_finite_and_a_few_steps_lower_the_loss_on_one_clip(fold_dataset):
    recipe = _recipe()
    sampler = recipe.sampler(_cases(fold_dataset, recipe), lesion_rate=1.0, training=False)
    clip = max((sampler.draw(np.random.default_rng(s)) for s in range(10)), key=lambda c: c.truth.sum())
    torch.manual_seed(0)
    network = recipe.build_network()
    optimizer = recipe.optimizer(network, 1e-4)
    losses = []
    for _ in range(5):
        loss = recipe.sample_loss([clip], network, np.random.default_rng(0), torch.device("cpu"), amp=False)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), recipe.clip_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0]


def test_optimizer_follows_sam2_fine_tuning():
    recipe = _recipe()
    torch.manual_seed(0)
    network = recipe.build_network()
    optimizer = recipe.optimizer(network, 5e-6)
    lr = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    named = dict(network.named_parameters())
    assert len(lr) == len(named)
    assert lr[id(named["sam_mask_decoder.iou_token.weight"])] == (5e-6, 0.1)
    assert lr[id(named["image_encoder.neck.convs.0.conv.bias"])] == (pytest.approx(3e-6), 0.0)
    assert lr[id(named["image_encoder.trunk.pos_embed"])][0] == pytest.approx(3e-6)  # no layer decay on it
    blocks = len(network.image_encoder.trunk.blocks)
    last = lr[id(named[f"image_encoder.trunk.blocks.{blocks - 1}.mlp.layers.0.weight"])]
    first = lr[id(named["image_encoder.trunk.blocks.0.mlp.layers.0.weight"])]
    assert last == (pytest.approx(3e-6 * 0.9), 0.1) and first[0] == pytest.approx(3e-6 * 0.9 ** blocks)
    assert lr[id(named["image_encoder.trunk.blocks.0.norm1.weight"])][1] == 0.0  # LayerNorm: no weight decay


def test_init_takes_sam2_released_format_and_a_plain_state_dict(tmp_path):
    recipe = _recipe()
    torch.manual_seed(1)
    source = recipe.build_network().state_dict()
    torch.save({"model": source}, tmp_path / "released.pt")
    torch.save(source, tmp_path / "plain.pt")
    for name in ("released.pt", "plain.pt"):
        torch.manual_seed(2)
        network = recipe.build_network()
        recipe.load_init(network, tmp_path / name)
        assert all(torch.equal(network.state_dict()[k], v) for k, v in source.items())
    torch.save({"model": {k: v for k, v in source.items() if not k.startswith("sam_mask_decoder")}}, tmp_path / "cut.pt")
    from nfbench.models.base import ModelError

    with pytest.raises(ModelError, match="does not fit the network.*missing key"):
        recipe.load_init(network, tmp_path / "cut.pt")


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def test_checkpoint_loads_in_sam2_and_a_killed_run_resumes_at_its_step(
        fold_dataset, tmp_path, kill_after_first_checkpoint, assert_same_last_weights):
    from sam2.build_sam import build_sam2

    straight = train(_config(fold_dataset, tmp_path / "straight"), quiet=True, command="nfbench train sam2 test")
    rows = _rows(tmp_path / "straight" / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss"))
    assert all(0 <= float(r[k]) <= 1 for r in rows for k in ("val_dice_1", "val_dice_last"))
    card = straight.card
    assert card["validation"]["scenario"] == "clips" and card["options"]["config"] == TINY["config"]
    assert card["command"] == "nfbench train sam2 test" and card["fold"] == 1 and card["weights"]["sha256"]
    model = build_sam2(TINY["config"], ckpt_path=str(straight.best), device="cpu",
                       hydra_overrides_extra=[f"++model.image_size={TINY['image_size']}"])  # strict: raises otherwise
    best = torch.load(straight.best, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())

    saves = kill_after_first_checkpoint(lambda: train(_config(fold_dataset, tmp_path / "resumed"), quiet=True))
    assert saves == [1]  # killed right after the first epoch's checkpoint
    half = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert half["epoch"] == 1 and half["optimizer"]["state"]  # AdamW's moments are saved
    train(_config(fold_dataset, tmp_path / "resumed"), resume=True, quiet=True)
    resumed = _rows(tmp_path / "resumed" / "metrics.csv")
    assert [r["step"] for r in resumed] == ["1", "2"]
    assert_same_last_weights(tmp_path / "straight", tmp_path / "resumed")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(rows) == drop(resumed)


def test_cli_trains_sam2_and_refuses_bad_options(fold_dataset, tmp_path):
    args = ["train", "sam2", "--data", str(fold_dataset), "--fold", "2", "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "1", "--frames", "2", "--interactions", "1", "--val-patches", "1", "--device", "cpu",
            "--quiet", "--config", TINY["config"]]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run"), "-o", "image_size=64"])
    assert result.exit_code == 0, result.output
    assert "best epoch 1: validation lesion Dice on clips" in result.output
    assert "sam2 without --init trains from random weights" in result.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["model"] == "sam2" and card["options"] == {"config": TINY["config"], "image_size": "64"}
    assert f"--config {TINY['config']}" in card["command"] and "--frames 2" in card["command"]
    assert set(torch.load(tmp_path / "run" / "best.pt", weights_only=True)) == {"model"}
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "-o", "image_size=100"])
    assert bad.exit_code == 1 and "image_size must be a multiple of 32" in bad.output
    missing = CliRunner().invoke(app, [*args[:-1], "configs/nope.yaml", "--out", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no configuration 'configs/nope.yaml'" in missing.output


def test_refusals_name_the_problem(fold_dataset, tmp_path):
    with pytest.raises(TrainError, match="image_size must be a multiple of 32"):
        train(_config(fold_dataset, tmp_path / "a", options={**TINY, "image_size": "big"}), quiet=True)
    with pytest.raises(TrainError, match="frames = 0"):
        _config(fold_dataset, tmp_path / "b", frames=0)

"""`nfbench train simpleclick`: frames paired with their own lesion, the focal loss, a few steps learn,
checkpoints reload strictly into the network, a killed run resumes to the same weights."""

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
from nfbench.io.volume import load_volume
from nfbench.lesions import instance_map
from nfbench.models.blocks.frames import FrameStack
from nfbench.models.simpleclick import SimpleClickConfig, build_network, load_weights, save_weights
from nfbench.train import TrainConfig, TrainError, train
from nfbench.train.data import load_grid_case
from nfbench.train.recipes import recipe_for
from nfbench.train.simpleclick_recipe import milestones, normalized_focal_loss

# A tiny SimpleClick (depth 4, 64 × 64 model frames) on 32-pixel crops around the first click.
TINY = {"image_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 4, "heads": 2, "neck": "8,16,32,64",
        "head_channels": 16, "crop": 32}


def _recipe(**settings):
    return recipe_for("simpleclick", TINY, **{"interactions": 2, **settings})


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    settings = dict(model="simpleclick", data=data, fold=1, out=out, epochs=2, steps_per_epoch=2, batch_size=2,
                    options=TINY, interactions=2, val_patches=3, device="cpu", seed=3, lr=1e-3)
    return TrainConfig(**{**settings, **changes})


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def test_samples_are_frames_with_their_own_lesion(fold_dataset):
    recipe = _recipe()
    for case in discover_dataset(fold_dataset).subset("imagesTr")[:2]:
        image, label = load_volume(case.image), load_volume(case.label)
        stack = FrameStack.of(image.shape, image.spacing)
        frames, instances = stack.frames(np.asarray(image.data, np.float32)), instance_map(np.asarray(label.data))
        sampler = recipe.sampler([load_grid_case(case, recipe.prepare)], lesion_rate=0.6, training=True)
        flipped = 0
        for seed in range(10):
            clip = sampler.draw(np.random.default_rng(seed))
            (n,), (row, column) = clip.indices, clip.click
            flip = not np.array_equal(clip.frames[0], frames[n])
            if flip:
                flipped += 1
                assert np.array_equal(clip.frames[0], frames[n][:, ::-1])
                column = clip.frames.shape[2] - 1 - column
            lesion = instances[stack.voxel(n, row, column)]
            assert lesion > 0 and clip.truth[0][clip.click]  # the first click is on the lesion
            truth = stack.frame(instances, n) == lesion  # this case's own mask of this frame, this lesion only
            assert np.array_equal(clip.truth[0], truth[:, ::-1] if flip else truth)
        assert 0 < flipped < 10


def test_normalized_focal_loss_follows_its_definition():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    loss = normalized_focal_loss(logits, target)
    for b in range(2):
        p, t = torch.sigmoid(logits[b, 0]), target[b, 0]
        p_t = torch.where(t > 0, p, 1 - p)
        beta = (1 - p_t) ** 2
        beta = beta * 4 / beta.sum()  # normalised to sum to the pixel count
        expected = (-0.5 * beta * torch.log(p_t)).sum() / 4
        assert float(loss[b]) == pytest.approx(float(expected), rel=1e-5)
    logits.requires_grad_(True)
    normalized_focal_loss(logits, target).sum().backward()
    assert torch.all(torch.sign(logits.grad) == -torch.sign(target - 0.5))  # pushes every pixel towards its target


def test_milestones_are_the_original_fractions():
    assert milestones(55) == [50, 55] and milestones(10) == [9, 10] and milestones(1) == [1]


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(fold_dataset):
    recipe = _recipe(interactions=1)
    cases = [load_grid_case(c, recipe.prepare) for c in discover_dataset(fold_dataset).subset("imagesTr")]
    sampler = recipe.sampler(cases, lesion_rate=1.0, training=False)
    samples = [sampler.draw(np.random.default_rng(s)) for s in range(4)]
    torch.manual_seed(0)
    network = recipe.build_network()
    network.train()
    optimizer = recipe.optimizer(network, 1e-3)
    losses = []
    for _ in range(16):
        loss = recipe.sample_loss(samples, network, np.random.default_rng(0), torch.device("cpu"), amp=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and network.training  # the click simulation gave training mode back
    # the normalised focal loss keeps its scale as the easy pixels are learned: it falls slowly but steadily
    assert np.mean(losses[-3:]) < 0.85 * losses[0] and np.mean(losses[-4:]) < np.mean(losses[:4])


def test_init_takes_simpleclick_checkpoints_and_mae_weights(tmp_path):
    recipe = _recipe()
    torch.manual_seed(1)
    source = recipe.build_network()
    save_weights(source, tmp_path / "simpleclick.pth")
    torch.save({"model": {k: v for k, v in source.backbone.state_dict().items() if k.startswith(("blocks", "patch"))}
                | {"pos_embed": source.backbone.pos_embed.detach()}}, tmp_path / "mae.pth")
    torch.manual_seed(2)
    network = recipe.build_network()
    recipe.load_init(network, tmp_path / "mae.pth")
    assert torch.equal(network.backbone.blocks[0].attn.qkv.weight, source.backbone.blocks[0].attn.qkv.weight)
    assert not torch.equal(network.head.conv_seg.weight, source.head.conv_seg.weight)
    recipe.load_init(network, tmp_path / "simpleclick.pth")
    assert all(torch.equal(network.state_dict()[k], v) for k, v in source.state_dict().items())


def test_checkpoint_reloads_strictly_and_a_killed_run_resumes_at_its_step(
        fold_dataset, tmp_path, kill_after_first_checkpoint, assert_same_last_weights):
    straight = train(_config(fold_dataset, tmp_path / "straight"), quiet=True, command="nfbench train simpleclick test")
    rows = _rows(tmp_path / "straight" / "metrics.csv")
    assert [r["step"] for r in rows] == ["2", "4"]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss"))
    assert all(0 <= float(r[k]) <= 1 for r in rows for k in ("val_dice_1", "val_dice_last"))
    card = straight.card
    assert card["model"] == "simpleclick" and card["options"]["crop"] == "32" and card["options"]["embed_dim"] == "32"
    assert card["validation"]["interactions"] == 3 and card["command"] == "nfbench train simpleclick test"
    saved = torch.load(straight.best, weights_only=True)
    params = saved["config"]["params"]
    config = SimpleClickConfig.from_options({k: v for k, v in params.items() if k != "crop"})
    network = build_network(config)
    load_weights(network, straight.best)  # strict
    assert all(torch.equal(network.state_dict()[k], v) for k, v in saved["state_dict"].items())

    saves = kill_after_first_checkpoint(lambda: train(_config(fold_dataset, tmp_path / "resumed"), quiet=True))
    assert saves == [1]  # killed right after the first epoch's checkpoint
    half = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert half["epoch"] == 1 and half["optimizer"]["state"]  # Adam's moments are saved
    load_weights(build_network(config), tmp_path / "resumed" / "last.pt")  # last.pt's network loads too
    train(_config(fold_dataset, tmp_path / "resumed"), resume=True, quiet=True)
    resumed = _rows(tmp_path / "resumed" / "metrics.csv")
    assert_same_last_weights(tmp_path / "straight", tmp_path / "resumed")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(rows) == drop(resumed)


def test_cli_trains_simpleclick_and_refuses_bad_options(fold_dataset, tmp_path):
    args = ["train", "simpleclick", "--data", str(fold_dataset), "--fold", "2", "--epochs", "1", "--steps-per-epoch",
            "1", "--batch-size", "2", "--interactions", "1", "--val-patches", "2", "--device", "cpu", "--quiet",
            *[w for k, v in TINY.items() if k != "crop" for w in ("-o", f"{k}={v}")]]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "best epoch 1: validation lesion Dice on clips" in result.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["options"]["crop"] == "0" and card["lr"] == 5e-5 and "--model-option image_size=64" in card["command"]
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "-o", "heads=3"])
    assert bad.exit_code == 1 and "heads=3 (must divide embed_dim 32)" in bad.output


def test_refusals_name_the_problem(fold_dataset, tmp_path):
    with pytest.raises(TrainError, match="crop must be a whole number"):
        train(_config(fold_dataset, tmp_path / "a", options={**TINY, "crop": "big"}), quiet=True)
    with pytest.raises(TrainError, match="unknown option.*embed; known: image_size"):
        train(_config(fold_dataset, tmp_path / "b", options={**TINY, "embed": "96"}), quiet=True)

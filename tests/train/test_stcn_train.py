"""`nfbench train stcn`: its loss, a few steps learn, checkpoints reload strictly, a killed run resumes, the CLI."""

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
from nfbench.models.stcn import build_network, load_weights
from nfbench.train import TrainConfig, TrainError, train
from nfbench.train.data import load_grid_case
from nfbench.train.recipes import recipe_for
from nfbench.train.stcn_recipe import bootstrap_share, bootstrapped_ce

REDUCED = {"stcn_config": "reduced"}


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    settings = dict(model="stcn", data=data, fold=1, out=out, epochs=2, steps_per_epoch=2, batch_size=2,
                    options=REDUCED, val_patches=2, device="cpu", seed=3, lr=1e-3)
    return TrainConfig(**{**settings, **changes})


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_bootstrapped_ce_keeps_the_hardest_pixels_after_the_warm_up():
    assert bootstrap_share(0) == bootstrap_share(19_999) == 1.0
    assert bootstrap_share(45_000) == pytest.approx(0.15 + 0.85 * 0.5)
    assert bootstrap_share(70_001) == 0.15
    scratch = recipe_for("stcn", REDUCED)
    assert scratch.crop == 128 and bootstrap_share(0, *scratch.warm_up) == 0.15  # from scratch: hardest 15 % at once
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1, 0] = torch.tensor([4.0, 0.0, -4.0, 2.0])
    target = torch.ones(1, 1, 4, dtype=torch.long)
    pixels = torch.nn.functional.cross_entropy(logits, target, reduction="none").flatten()
    assert bootstrapped_ce(logits, target, 1.0) == pytest.approx(float(pixels.mean()))
    assert bootstrapped_ce(logits, target, 0.5) == pytest.approx(float(pixels.sort().values[2:].mean()))


def test_clips_are_cropped_around_the_first_click_and_a_few_steps_lower_the_loss(fold_dataset):
    torch.manual_seed(0)
    recipe = recipe_for("stcn", REDUCED)
    recipe.crop = 64
    cases = [load_grid_case(c, recipe.prepare) for c in discover_dataset(fold_dataset).subset("imagesTr")]
    rng = np.random.default_rng(0)
    clips = [recipe.sampler(cases, lesion_rate=1.0, training=True).draw(rng) for _ in range(2)]
    frames, truth = recipe._crops(clips, np.random.default_rng(1))
    assert frames.shape[:2] == truth.shape[:2] == (2, 3) and frames.shape[2:] == (64, 64)
    assert truth[:, 0].any(axis=(1, 2)).all()  # the first frame's click stays inside the crop
    network = recipe.build_network()
    optimizer = recipe.optimizer(network, 1e-3)
    losses = []
    for _ in range(12):
        loss = recipe.sample_loss(clips, network, np.random.default_rng(1), torch.device("cpu"), amp=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_the_checkpoint_reloads_strictly_and_a_killed_run_resumes_to_the_same_weights(
        fold_dataset, tmp_path, kill_after_first_checkpoint, assert_same_last_weights):
    result = train(_config(fold_dataset, tmp_path / "straight"), quiet=True)
    rows = _rows(tmp_path / "straight" / "metrics.csv")
    assert [r["step"] for r in rows] == ["2", "4"] and all(0 <= float(r["val_dice_last"]) <= 1 for r in rows)
    load_weights(build_network("reduced"), result.best)  # best.pt is a plain state dict, as stcn.pth
    assert result.card["model"] == "stcn" and result.card["options"] == {"stcn_config": "reduced"}
    assert result.card["validation"]["scenario"] == "clips" and result.card["validation"]["frames"] == 3
    saves = kill_after_first_checkpoint(lambda: train(_config(fold_dataset, tmp_path / "resumed"), quiet=True))
    assert saves == [1]  # killed right after the first epoch's checkpoint
    train(_config(fold_dataset, tmp_path / "resumed"), resume=True, quiet=True)
    assert_same_last_weights(tmp_path / "straight", tmp_path / "resumed")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(rows) == drop(_rows(tmp_path / "resumed" / "metrics.csv"))


def test_fine_tuning_loads_the_init_strictly_and_freezes_batch_norm(fold_dataset, tmp_path):
    start = build_network("reduced")
    torch.save(start.state_dict(), tmp_path / "start.pth")
    recipe = recipe_for("stcn", REDUCED)
    network = recipe.build_network()
    recipe.load_init(network, tmp_path / "start.pth")
    assert recipe.crop == 384 and recipe.warm_up == (20_000, 70_000)  # the original's fine-tuning
    assert recipe.freeze_bn and all(torch.equal(v, start.state_dict()[k]) for k, v in network.state_dict().items())
    cases = [load_grid_case(c, recipe.prepare) for c in discover_dataset(fold_dataset).subset("imagesTr")]
    clips = [recipe.sampler(cases, lesion_rate=1.0, training=True).draw(np.random.default_rng(0))]
    network.train()
    recipe.sample_loss(clips, network, np.random.default_rng(0), torch.device("cpu"), amp=False)
    assert torch.equal(network.state_dict()["key_encoder.bn1.running_mean"], start.state_dict()["key_encoder.bn1.running_mean"])
    with pytest.raises(TrainError, match=r"start.pth.*does not fit STCN \(original\)"):
        train(_config(fold_dataset, tmp_path / "bad", options={"stcn_config": "original"}, init=tmp_path / "start.pth"),
              quiet=True)


def test_cli_trains_stcn_and_refuses_an_unknown_configuration(fold_dataset, tmp_path):
    args = ["train", "stcn", "--data", str(fold_dataset), "--fold", "2", "--epochs", "1", "--steps-per-epoch", "1",
            "--val-patches", "1", "--device", "cpu", "--quiet", "--lr", "0.001"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run"), "-o", "stcn_config=reduced"])
    assert result.exit_code == 0, result.output
    assert "best epoch 1: validation lesion Dice on clips" in result.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert "-o stcn_config=reduced" in card["command"] or "--model-option stcn_config=reduced" in card["command"]
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "-o", "stcn_config=huge"])
    assert bad.exit_code == 1 and "unknown STCN configuration 'huge'" in bad.output

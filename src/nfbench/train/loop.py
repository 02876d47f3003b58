"""`nfbench train`: the training loop every recipe shares — data, steps, validation, checkpoints, resume.

The fold's validation cases are never trained on (the original trained on them, seed_spec §5.1).
The best checkpoint is chosen by nfbench's own evaluation of the fold's validation cases:
``lesion-corrective`` with ``val_lesions`` lesions per case and ``val_interactions`` clicks, the
lesion Dice after the last click, exactly as ``nfbench evaluate`` would score the checkpoint. A
recipe that is not ``evaluated`` (``sam2``, ``stcn``) is scored instead by its own Dice on ``val_patches``
fixed samples of the validation cases (:meth:`~nfbench.train.recipes.Recipe.sample_dice`).

Everything random goes through one generator seeded by ``seed`` (patches, flips, clicks) and
``torch.manual_seed(seed)`` (the initial weights). ``last.pt`` holds the whole state at the end of
each epoch (network, optimiser, schedule, AMP scaler, both generators, the best so far), so a run
killed at any point resumes with ``resume=True`` from its last finished epoch and ends with the
weights an uninterrupted run would have.

Files in ``out``: ``train.json`` (the configuration), ``metrics.csv`` (one row per epoch),
``last.pt``, ``best.pt`` (the best weights, in the format ``--weights`` loads), ``card.json`` (the
model card, written at the end) and, for models validated by simulated interaction, ``validation/``
(the last validation's run folder, which ``nfbench report`` reads). A run stopped before its first
epoch ended starts again from scratch in the same folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import nfbench
from nfbench.io.dataset import discover_dataset
from nfbench.io.splits import Fold, read_fold
from nfbench.train.data import GridCase, load_grid_case
from nfbench.train.recipes import RECIPES, Recipe, recipe_for

__all__ = ["TrainConfig", "TrainError", "TrainResult", "train", "METRICS"]

METRICS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_dice_1", "val_dice_last", "best_epoch", "seconds")
"""Columns of ``metrics.csv``."""
_STATE, _BEST, _CONFIG, _CARD, _LOG = "last.pt", "best.pt", "train.json", "card.json", "metrics.csv"
_CANDIDATE = "candidate.pt"
"""The weights under validation, removed when the run ends."""
_VAL_SEED = 1  # the validation patches' stream, apart from the training stream


class TrainError(ValueError):
    """A training run that cannot start or resume as asked (the message names the file and the problem)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights; written to ``train.json``."""

    model: str
    data: Path
    fold: int
    out: Path
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 2
    lr: float | None = None
    """``None``: the recipe's (the original's) learning rate."""
    seed: int = 0
    init: Path | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    """The model's options (``-o``): those fixing the network and grid train it; all go to validation."""
    interactions: int | None = None
    """Most rounds of simulated corrective clicks per sample; ``None``: the recipe's (SW-FastEdit 10, DINs 0)."""
    click_policy: str = "edt-power"
    positive_clicks: str = "original"
    """DINs: the original's positive clicks, or ``per-lesion`` (each click's lesion drawn first; :class:`~nfbench.train.recipes.DINsRecipe`)."""
    small_lesion_boost: float = 0.0
    """DINs: weigh a lesion voxel's loss by √(value / lesion size in voxels) more, 0 = off (:class:`~nfbench.train.recipes.DINsRecipe`)."""
    target: str = "all"
    """SW-FastEdit: every lesion of the patch, or ``clicked``, the one prompted (:class:`~nfbench.train.recipes.SWFastEditRecipe`)."""
    lesion_rate: float = 0.6
    frames: int = 8
    """Consecutive frames per training clip of a 2D video model (``sam2``); unused by the 3D recipes."""
    val_every: int = 1
    val_lesions: int = 10
    val_interactions: int = 3
    val_patches: int = 8
    device: str = "auto"
    amp: bool = True
    """Mixed precision, on CUDA only."""
    threads: int = 0
    """Torch CPU threads (0: torch's default)."""

    def __post_init__(self) -> None:
        whole = {"fold": self.fold, "epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch,
                 "batch_size": self.batch_size, "frames": self.frames, "val_every": self.val_every,
                 "val_lesions": self.val_lesions, "val_interactions": self.val_interactions,
                 "val_patches": self.val_patches}
        bad = [f"{k} = {v}" for k, v in whole.items() if int(v) != v or v < 1]
        if (self.interactions or 0) < 0:
            bad.append(f"interactions = {self.interactions} (must be >= 0)")
        if self.threads < 0:
            bad.append(f"threads = {self.threads} (must be >= 0)")
        if self.lr is not None and not self.lr > 0:
            bad.append(f"lr = {self.lr} (must be > 0)")
        if not 0 <= self.lesion_rate <= 1:
            bad.append(f"lesion_rate = {self.lesion_rate} (must be in [0, 1])")
        if int(self.seed) != self.seed or self.seed < 0:
            bad.append(f"seed = {self.seed} (must be a whole number >= 0)")
        if bad:
            raise TrainError(f"training settings out of range: {'; '.join(bad)} (whole numbers >= 1 unless noted)")

    def record(self) -> dict[str, Any]:
        """JSON form; the initial checkpoint by path, SHA-256 and size."""
        from nfbench.models.spec import file_identity

        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        out["options"] = {k: str(v) for k, v in sorted(self.options.items())}
        out["init"] = None if self.init is None else {"path": str(self.init), **file_identity(self.init)}
        del out["out"]
        return out


@dataclass(frozen=True)
class TrainResult:
    out: Path
    best: Path
    card: dict[str, Any]


def _cases(config: TrainConfig, recipe: Recipe, quiet: bool) -> tuple[list[GridCase], list[GridCase], Fold]:
    dataset = discover_dataset(config.data)
    training = {c.name: c for c in dataset.subsets.get("imagesTr", [])}
    if not training:
        raise TrainError(f"{Path(config.data) / 'imagesTr'}: no training images found")
    try:
        fold = read_fold(config.data, config.fold)
    except ValueError as err:
        raise TrainError(str(err)) from err
    missing = sorted(set(fold.train + fold.val) - set(training))
    if missing:
        raise TrainError(f"{Path(config.data) / 'splits' / f'fold_{config.fold}'}: lists case(s) not in imagesTr: "
                         f"{', '.join(missing[:5])}")
    loaded: dict[str, list[GridCase]] = {"train": [], "val": []}
    with _progress(quiet) as bar:
        task = bar.add_task("loading cases", total=len(fold.train) + len(fold.val))
        for kind, names in (("train", fold.train), ("val", fold.val)):
            for name in names:
                loaded[kind].append(load_grid_case(training[name], recipe.prepare))
                bar.advance(task)
    return loaded["train"], loaded["val"], fold


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=quiet, transient=False)


def _atomic_save(state: dict, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _check_out(config: TrainConfig, resume: bool) -> dict | None:
    """The saved state to resume from, or None for a fresh run; refuses a folder that holds another run."""
    out, record = Path(config.out), config.record()
    saved_config = out / _CONFIG
    from nfbench.results.store import output_folder_problem

    problem = output_folder_problem(out, _CONFIG, "training run")
    if problem:
        raise TrainError(problem)
    started = saved_config.is_file()
    if started and not (out / _STATE).is_file():
        return None  # stopped before its first epoch ended: nothing to keep, it starts again
    if not resume:
        if started:
            raise TrainError(f"{out}: already holds a training run; resume it (--resume) or choose another folder")
        return None
    if not started:
        raise TrainError(f"{out}: no training run to resume (no {_CONFIG} and {_STATE})")
    saved = json.loads(saved_config.read_text())
    defaults = {f.name: f.default for f in fields(TrainConfig)}  # a setting added since the run started had its default
    changed = sorted(k for k in set(saved) | set(record)
                     if k != "command" and saved.get(k, defaults.get(k)) != record.get(k))
    if changed:
        raise TrainError(f"{saved_config}: the run was started with other settings ({', '.join(changed)}); "
                         "resume with the same command")
    import torch

    return torch.load(out / _STATE, map_location="cpu", weights_only=False)


_MODEL_SETTINGS = ("positive_clicks", "small_lesion_boost", "target")
"""Settings that only some recipes take: another value than the default is refused for the others."""


def train(config: TrainConfig, *, resume: bool = False, quiet: bool = False, command: str | None = None) -> TrainResult:
    """Train (or fine-tune from ``config.init``) a model on a fold, writing ``config.out``; see the module doc."""
    import torch

    from nfbench.models.spec import resolve_device

    try:
        recipe = recipe_for(config.model, config.options, interactions=config.interactions,
                            click_policy=config.click_policy, positive_clicks=config.positive_clicks,
                            small_lesion_boost=config.small_lesion_boost, target=config.target,
                            frames=config.frames)
        defaults = {f.name: f.default for f in fields(TrainConfig)}
        for setting in _MODEL_SETTINGS:
            if getattr(config, setting) != defaults[setting] and setting not in recipe.settings:
                owners = ", ".join(name for name, r in RECIPES.items() if setting in r.settings)
                raise ValueError(f"{setting.replace('_', ' ')} {getattr(config, setting)!r}: "
                                 f"{config.model} has no such setting ({owners} has)")
    except ValueError as err:
        raise TrainError(str(err)) from err
    state = _check_out(config, resume)
    device = torch.device(resolve_device(config.device))
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        train_cases, val_cases, fold = _cases(config, recipe, quiet)
        torch.manual_seed(config.seed)
        network = recipe.build_network()
        if config.init is not None:
            from nfbench.models.base import ModelError

            try:
                recipe.load_init(network, Path(config.init))
            except ModelError as err:  # a checkpoint that does not fit: the CLI's clean refusal
                raise TrainError(str(err)) from err
        network.to(device)
        optimizer = recipe.optimizer(network, config.lr or recipe.lr)
        scheduler = recipe.scheduler(optimizer, config.epochs)
        amp = config.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp and recipe.amp_dtype == "float16")  # bfloat16 needs none
        rng = np.random.default_rng(config.seed)
        try:
            sampler = recipe.sampler(train_cases, lesion_rate=config.lesion_rate, training=True)
            val_sampler = recipe.sampler(val_cases, lesion_rate=config.lesion_rate, training=False)
        except ValueError as err:
            raise TrainError(f"{config.data}, fold {config.fold}: {err}") from err
        val_rng = np.random.default_rng([config.seed, _VAL_SEED])
        val_patches = [val_sampler.draw(val_rng) for _ in range(config.val_patches)]
        validator = (_Validator(config, recipe, device, fold.val) if recipe.evaluated
                     else _SampleValidator(config, recipe, device, val_patches))
        if state is None:
            validator.check(network)  # an option the model refuses fails now, not after the first epoch
    except TrainError:
        _leave_as_found(out, created)
        raise
    epoch, best = 0, {"epoch": 0, "dice": -1.0}
    if state is None:
        (out / _CONFIG).write_text(json.dumps({**config.record(), "command": command}, indent=2) + "\n")
        with (out / _LOG).open("w", newline="") as handle:
            csv.writer(handle).writerow(METRICS)
    else:
        network.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:  # dropout draws on the GPU
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        sampler._draws = state["draws"]
        epoch, best = state["epoch"], state["best"]
        _keep_log_rows(out / _LOG, epoch)
        command = json.loads((out / _CONFIG).read_text()).get("command") or command  # the run's, not the resume's
    started = time.perf_counter() - (state or {}).get("seconds", 0.0)
    total = config.epochs * config.steps_per_epoch
    with _progress(quiet) as bar:
        task = bar.add_task(f"training {config.model}", total=total, completed=epoch * config.steps_per_epoch)
        while epoch < config.epochs:
            epoch += 1
            network.train()
            losses = []
            for _ in range(config.steps_per_epoch):
                patches = [sampler.draw(rng) for _ in range(config.batch_size)]
                loss = recipe.sample_loss(patches, network, rng, device, amp=amp)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if recipe.clip_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(network.parameters(), recipe.clip_norm)
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.detach()))
                bar.update(task, advance=1, description=f"training {config.model} · epoch {epoch} · loss {np.mean(losses):.4f}")
            lr = optimizer.param_groups[0]["lr"]
            val_loss = _patch_loss(recipe, network, val_patches, config.seed, device)
            dice: dict[str, float] = {}
            if epoch % config.val_every == 0 or epoch == config.epochs:
                dice = validator.dice(network)
                if dice["last"] > best["dice"]:
                    best = {"epoch": epoch, "dice": dice["last"], "dice_1": dice["first"]}
                    recipe.save_weights(network, out / _BEST)
            recipe.step_scheduler(scheduler, val_loss)
            seconds = time.perf_counter() - started
            with (out / _LOG).open("a", newline="") as handle:
                csv.writer(handle).writerow([epoch, epoch * config.steps_per_epoch, f"{lr:.3g}", f"{np.mean(losses):.6f}",
                                             f"{val_loss:.6f}", _fmt(dice.get("first")), _fmt(dice.get("last")),
                                             best["epoch"], f"{seconds:.1f}"])
            _atomic_save({"net": network.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                          "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                          "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                          "draws": sampler._draws, "epoch": epoch, "best": best, "seconds": seconds}, out / _STATE)
    card = _card(config, recipe, network, best, out, time.perf_counter() - started, command, validator.describe(), fold)
    (out / _CARD).write_text(json.dumps(card, indent=2) + "\n")
    (out / _CANDIDATE).unlink(missing_ok=True)
    return TrainResult(out, out / _BEST, card)


def _leave_as_found(out: Path, created: bool) -> None:
    """A refused run leaves ``out`` as it found it: no candidate, and no empty folder it made."""
    (out / _CANDIDATE).unlink(missing_ok=True)
    if created and not any(out.iterdir()):
        out.rmdir()


def _keep_log_rows(log: Path, epoch: int) -> None:
    """Drop the ``metrics.csv`` rows past the saved ``epoch``: a run killed after logging an epoch
    but before saving its state redoes that epoch on resume, and must not log it twice."""
    with log.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if int(row[0]) <= epoch]
    if len(kept) < len(rows):
        partial = log.with_suffix(".csv.partial")
        with partial.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)
        partial.replace(log)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _patch_loss(recipe: Recipe, network, patches, seed: int, device) -> float:
    """Mean loss on the fixed validation samples, clicks drawn from the same seed every epoch."""
    import torch

    rng = np.random.default_rng([seed, _VAL_SEED, 1])
    network.eval()
    with torch.no_grad():
        losses = [float(recipe.sample_loss(patches[first:first + 2], network, rng, device, amp=False))
                  for first in range(0, len(patches), 2)]
    return float(np.mean(losses))


class _SampleValidator:
    """Scores weights by the recipe's own Dice on the fixed validation samples (no evaluation model needed)."""

    def __init__(self, config: TrainConfig, recipe: Recipe, device, samples: list) -> None:
        self.recipe, self.device, self.samples = recipe, device, samples
        self.seed, self.frames = config.seed, getattr(recipe, "frames", config.frames)  # STCN: always 3
        self.amp = config.amp and device.type == "cuda"

    def check(self, network) -> None:
        """Nothing to check: no model is loaded."""

    def dice(self, network) -> dict[str, float]:
        network.eval()
        return self.recipe.sample_dice(network, self.samples, np.random.default_rng([self.seed, _VAL_SEED, 2]),
                                       self.device, amp=self.amp)

    def describe(self) -> dict[str, Any]:
        return {"scenario": "clips", "samples": len(self.samples), "frames": self.frames,
                "interactions": 1 + self.recipe.interactions}  # type: ignore[attr-defined]


class _Validator:
    """Scores weights with ``nfbench evaluate`` on the fold's validation cases (``lesion-corrective``)."""

    def __init__(self, config: TrainConfig, recipe: Recipe, device, cases: tuple[str, ...]) -> None:
        from nfbench.interaction.scenarios import scenario_from_options
        from nfbench.models.spec import ModelSpec
        from nfbench.runner.evaluate import EvaluationPlan

        self.recipe, self.out = recipe, Path(config.out)
        self.weights = self.out / _CANDIDATE
        self.spec = ModelSpec(config.model, weights=self.weights, options=dict(config.options), device=str(device))
        scenario = scenario_from_options("lesion-corrective", lesions=config.val_lesions,
                                         interactions=config.val_interactions)
        self.plan = EvaluationPlan(data=Path(config.data), test_sets=("imagesTr",), models=(self.spec,),
                                   scenarios=(scenario,), seed=config.seed, fold=config.fold, cases=cases)
        self.last, self.lesions = config.val_interactions, config.val_lesions

    def _model(self, network):
        from nfbench.models.base import ModelError
        from nfbench.models.registry import load_spec

        self.recipe.save_weights(network, self.weights)
        try:
            return load_spec(self.spec)
        except ModelError as err:
            raise TrainError(f"{err} (check the -o options)") from err

    def check(self, network) -> None:
        self._model(network)

    def dice(self, network) -> dict[str, float]:
        from nfbench.results.aggregate import per_case_at
        from nfbench.results.store import read_run_table
        from nfbench.runner.evaluate import evaluate

        run = self.out / "validation"
        shutil.rmtree(run, ignore_errors=True)
        summary = evaluate(self.plan, run, models={self.spec.name: self._model(network)}, quiet=True)
        if summary.failed:
            raise TrainError(f"validation failed on {summary.failed[0][0]}: {summary.failed[0][1]}")
        table = read_run_table(run, "interactions")
        return {key: float(per_case_at(table, "dice_lesion", k)["dice_lesion"].mean())
                for key, k in (("first", 1), ("last", self.last))}

    def describe(self) -> dict[str, Any]:
        return {"scenario": "lesion-corrective", "lesions_per_case": self.lesions, "interactions": self.last}


def _card(config: TrainConfig, recipe: Recipe, network, best: dict, out: Path, seconds: float,
          command: str | None, validation: dict[str, Any], fold: Fold) -> dict[str, Any]:
    import torch

    from nfbench.models.spec import file_identity

    dataset = Path(config.data) / "dataset.json"
    meta = json.loads(dataset.read_text()) if dataset.is_file() else {}
    return {
        "model": config.model,
        "weights": {"file": _BEST, **file_identity(out / _BEST)},
        "options": {k: str(v) for k, v in sorted({**recipe.options, **config.options}.items())},
        "command": command or " ".join(sys.argv),
        "data": {"path": str(Path(config.data).resolve()),
                 **{k: meta[k] for k in ("name", "phantom_version", "seed", "size", "burden", "difficulty") if k in meta}},
        "fold": config.fold, "cases": {"train": list(fold.train), "val": list(fold.val)}, "seed": config.seed, "epochs": config.epochs, "steps_per_epoch": config.steps_per_epoch,
        "batch_size": config.batch_size, "lr": config.lr or recipe.lr, "init": config.record()["init"],
        "validation": {**validation, "best_epoch": best["epoch"],
                       "dice_lesion_first": best.get("dice_1"), "dice_lesion_last": best["dice"]},
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "training_seconds": round(seconds, 1),
        "nfbench_version": nfbench.__version__, "torch_version": torch.__version__, "numpy_version": np.__version__,
    }

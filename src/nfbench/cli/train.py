"""`nfbench train sw-fastedit|dins|sam2|stcn|simpleclick`: train or fine-tune a learned model on a dataset's fold."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stdout, warn

__all__ = ["train_command"]


@app.command("train")
def train_command(
    context: typer.Context,
    model: Annotated[str, typer.Argument(help="Model to train: sw-fastedit, dins, sam2, stcn or simpleclick.")],
    data: Annotated[Path, typer.Option(help="Dataset folder with imagesTr/labelsTr and splits/ (`nfbench data split`).", exists=True, file_okay=False)],
    fold: Annotated[int, typer.Option(help="Fold K: trains on splits/fold_K/train_set.txt, chooses the best epoch on val_set.txt.")],
    out: Annotated[Path, typer.Option(help="Folder for train.json, metrics.csv, last.pt, best.pt and card.json.")],
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    steps_per_epoch: Annotated[int, typer.Option(help="Training steps per epoch.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Patches (sam2: clips) per step (>= 2 is several times faster per patch on a CPU; the original sam2 fine-tuning: 1).")] = 2,
    lr: Annotated[float | None, typer.Option(help="Learning rate [the original's: sw-fastedit 1e-4, dins 3e-4, sam2 5e-6 (its image encoder 0.6 of it); stcn 1e-5 (STCN's training; its NF fine-tuning from stcn.pth: 1e-6); simpleclick 5e-5].")] = None,
    init: Annotated[Path | None, typer.Option(help="Checkpoint to fine-tune from (the original format or ours; sam2: SAM2's released {'model': ...} format or a plain state dict; stcn: the published stcn.pth; simpleclick: a SimpleClick checkpoint or MAE ViT weights {'model': ...}).", exists=True, dir_okay=False)] = None,
    config: Annotated[str | None, typer.Option(help="sam2: the sam2 package's configuration, e.g. configs/sam2.1/sam2.1_hiera_t.yaml [configs/sam2.1/sam2.1_hiera_b+.yaml] (the model option config).", show_default=False)] = None,
    frames: Annotated[int, typer.Option(help="sam2: consecutive coronal frames per training clip (the original: 8; stcn always trains on 3).")] = 8,
    model_option: Annotated[list[str] | None, typer.Option("--model-option", "-o", help="KEY=VALUE option of the model: those fixing the network and grid (filters, roi_size, spacing; base_filters, max_filters, roi; stcn_config=original|reduced) shape the training; all are used to validate (repeatable).")] = None,
    interactions: Annotated[int | None, typer.Option(help="Most rounds of simulated corrective clicks per sample [sw-fastedit: 10, as the original; dins: 0, the original's random clicks only; sam2: 7 clicks on each corrected frame, as the original; simpleclick: 3, as the original].", show_default=False)] = None,
    clicks: Annotated[str, typer.Option(help="Click policy of the simulated corrections.")] = "edt-power",
    positive_clicks: Annotated[str, typer.Option(help="dins: the original's positive clicks (drawn from the eroded voxels of all the patch's lesions together), or per-lesion (each click's lesion drawn first, small lesions included).")] = "original",
    small_lesion_boost: Annotated[float, typer.Option(help="dins: weigh each lesion voxel's loss by sqrt(VALUE / its lesion's voxels) more (at least 1x), so one-voxel lesions count; 0: the original loss.")] = 0.0,
    target: Annotated[str, typer.Option(help="sw-fastedit: segment every lesion of a patch (all, the original), or only the lesion under the patch centre, prompted by a first click in it (clicked: the lesion-wise task).")] = "all",
    lesion_rate: Annotated[float, typer.Option(help="Share of patches centred on a lesion.")] = 0.6,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs (and after the last).")] = 1,
    val_lesions: Annotated[int, typer.Option(help="Lesions per validation case in the simulated lesion-corrective evaluation.")] = 10,
    val_interactions: Annotated[int, typer.Option(help="Clicks per lesion in validation; the best epoch has the best Dice after them.")] = 3,
    val_patches: Annotated[int, typer.Option(help="Fixed validation patches (sam2: clips) for the validation loss; sam2 picks the best epoch by the Dice of its clips.")] = 8,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the initial weights, patches and clicks.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA.")] = True,
    threads: Annotated[int, typer.Option(help="Torch CPU threads (0: torch's default, all cores).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out from its last epoch.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train MODEL on a fold (or fine-tune it from --init), keeping the epoch with the best validation Dice.

    sam2 and stcn train on clips of consecutive coronal frames (nfbench.train.sam2_recipe, stcn_recipe) and are
    validated by the Dice of their masks propagated through clips of the validation cases; simpleclick on single
    coronal frames (nfbench.train.simpleclick_recipe), validated by the Dice of its clicked masks on validation frames.
    """
    from nfbench.models.registry import missing_modules
    from nfbench.models.spec import parse_option

    missing = missing_modules("torch", "monai", extra="torch")
    if model == "sam2":
        missing += missing_modules("sam2", "hydra", "iopath", extra="sam2")
    if missing:
        fail(f"training needs {'; '.join(missing)}")
    from nfbench.train import TrainConfig, TrainError, train

    if model == "sam2" and init is None and not resume:
        warn("sam2 without --init trains from random weights; it is meant to fine-tune a released checkpoint "
             "(sam2.1_hiera_*.pt)")

    try:
        options = dict(parse_option(o) for o in model_option or [])
        if config is not None:
            if options.get("config", config) != config:
                raise ValueError(f"--config {config} and -o config={options['config']} disagree; give one")
            options["config"] = config
        config = TrainConfig(model=model, data=data, fold=fold, out=out, epochs=epochs, steps_per_epoch=steps_per_epoch,
                             batch_size=batch_size, lr=lr, seed=seed, init=init, options=options,
                             interactions=interactions, click_policy=clicks, positive_clicks=positive_clicks,
                             small_lesion_boost=small_lesion_boost, target=target, lesion_rate=lesion_rate,
                             frames=frames,
                             val_every=val_every, val_lesions=val_lesions, val_interactions=val_interactions,
                             val_patches=val_patches,
                             device=device, amp=amp, threads=threads)
        result = train(config, resume=resume, quiet=quiet, command=_command_line(context))
    except (TrainError, ValueError) as err:
        fail(str(err))
    figures = result.card["validation"]
    where = " on clips" if figures["scenario"] == "clips" else ""
    stdout.print(f"best epoch {figures['best_epoch']}: validation lesion Dice{where} {figures['dice_lesion_last']:.3f} "
                 f"after {figures['interactions']} clicks; weights {result.best} (card: {result.out / 'card.json'})",
                 highlight=False)


def _command_line(context: typer.Context) -> str:
    """The command as given, rebuilt from the parsed options (``sys.argv`` is not the command under a test runner).

    Options left at their defaults are left out, except the seed, which a reader must always see.
    """
    words = ["nfbench", context.info_name or "train"]
    for parameter in context.command.params:
        value = context.params.get(parameter.name)
        if parameter.param_type_name == "argument":
            words.append(str(value))
            continue
        at_default = value == parameter.default and parameter.name != "seed"
        if value is None or at_default or (value == [] and not parameter.default):
            continue
        flag = parameter.opts[0]
        if getattr(parameter, "is_flag", False):
            words.append(flag if value else parameter.secondary_opts[0])
        else:
            words += [w for v in (value if isinstance(value, (list, tuple)) else [value]) for w in (flag, str(v))]
    return shlex.join(words)

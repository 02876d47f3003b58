"""How SimpleClick fine-tunes (seed_spec §5.4): coronal frames, one lesion each, iterative clicks, its focal loss.

A case is its stack of frames (:func:`~nfbench.train.data.frame_case`, the layout of
``nfbench data slice`` that :class:`~nfbench.models.simpleclick.SliceClicker` sees at evaluation),
each label frame taken from the same case and index as its image frame. The original paired them
wrongly: its ``NeurofibromaDataset`` keyed the masks by file stem (``00000``, ``00001``, …, shared
by every case), so each image slice got the mask of the last case holding that slice index (§5.4).

A sample is one frame and one lesion on it (a :class:`~nfbench.train.data.ClipSampler` clip of one
frame: the lesion drawn as the other trainers draw it, a voxel of it uniformly on that frame, which
is the first click), flipped left–right with p = 0.5. With the ``crop`` option (0: the whole frame,
as the original) a ``crop``-pixel square around the first click is the network's view, as
:class:`~nfbench.models.simpleclick.SliceClicker` cuts it. Frame (or crop) and lesion are resized to
``image_size`` (the lesion nearest), the click mapped to model pixels.

Clicks as isegm's ``ISTrainer.batch_forward``: a batch gets ``U{0..interactions}`` (default 3,
``max_num_next_clicks``) rounds in which the network, in evaluation mode and without gradient,
predicts from the clicks so far and its previous sigmoid output, and each sample gets the next
click on its error (nfbench's ``click_policy``; the original: the deepest pixel of the larger error,
prediction > 0.49); then one step on the last clicks and previous output. Loss:
``NormalizedFocalLossSigmoid`` (α 0.5, γ 2), written from its definition (:func:`normalized_focal_loss`);
Adam, lr 5e-5, β (0.9, 0.999); ``MultiStepLR`` × 0.1 at 50/55 and at the end of the epochs (the
original: [50, 55] of 55). Simplified: one first click (the original's ``MultiPointSampler`` drew
up to 24 positive and negative points), no merged objects, no shift–scale–rotate.

Validation (no evaluation model is needed): on ``val_patches`` fixed frames of the validation
cases, the Dice on the frame of :class:`~nfbench.models.simpleclick.SliceClicker`'s masks after the
first click (``val_dice_1``) and after ``interactions`` corrective clicks (``val_dice_last``, which
picks the best epoch), each correction on the error of the previous mask, which is fed back.

Weights are written as isegm saves them, ``{"state_dict": ..., "config": ...}`` (the config as plain
values, with ``crop``), which :func:`nfbench.models.simpleclick.load_weights` loads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nfbench.interaction.policies import next_clicks
from nfbench.models.simpleclick import ORIGINAL, SimpleClickConfig, crop_window, cut_square
from nfbench.train.data import Clip, ClipSampler, frame_case
from nfbench.train.recipes import Recipe

__all__ = ["SimpleClickRecipe", "milestones", "normalized_focal_loss"]

_PRED_THRESHOLD = 0.49  # isegm's get_next_points


def normalized_focal_loss(logits, target, *, alpha: float = 0.5, gamma: float = 2.0, eps: float = 1e-12):
    """isegm's ``NormalizedFocalLossSigmoid`` per sample: focal weights ``(1 - p_t)^γ`` rescaled (without
    gradient) to sum to the pixel count, times ``-α_t log p_t``, averaged over the pixels.

    ``logits`` and ``target`` (0/1) of shape ``(B, 1, H, W)``; returns ``(B,)``.
    """
    import torch

    prob = torch.sigmoid(logits.float())
    target = target.float()
    p_t = 1.0 - (target - prob).abs()
    weight = torch.where(target > 0.5, alpha, 1.0 - alpha)
    beta = (1.0 - p_t) ** gamma
    pixels = float(target.shape[-2] * target.shape[-1])
    scale = (pixels / (beta.sum(dim=(-2, -1), keepdim=True) + eps)).detach()
    loss = -weight * beta * scale * torch.log(torch.clamp(p_t + eps, max=1.0))
    return loss.flatten(1).sum(1) / (loss[0].numel() + eps)


class SimpleClickRecipe(Recipe):
    """SimpleClick fine-tuned on coronal frames, one lesion per sample; see the module docstring."""

    model = "simpleclick"
    defaults = {**ORIGINAL.options(), "crop": 0}
    lr = 5e-5
    flip_rate = 0.5
    alpha, gamma = 0.5, 2.0
    evaluated = False

    def __init__(self, options: Mapping[str, object], *, interactions: int | None = None,
                 click_policy: str = "edt-power") -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:  # no evaluation model checks them later: a misspelt size would train the 1024 ViT-B
            raise ValueError(f"model 'simpleclick': unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(self.defaults)}")
        super().__init__(options)
        self.config = SimpleClickConfig.from_options({k: v for k, v in self.options.items() if k != "crop"})
        try:
            self.crop = int(str(self.options["crop"]))
        except ValueError:
            self.crop = -1
        if self.crop < 0:
            raise ValueError(f"model 'simpleclick': crop must be a whole number >= 0, got {self.options['crop']!r}")
        self.interactions = 3 if interactions is None else int(interactions)
        self.click_policy = click_policy

    def build_network(self):
        from nfbench.models.simpleclick import build_network

        return build_network(self.config)

    def load_init(self, network, path):
        """MAE ViT weights (``{"model": ...}``) into the backbone, or a SimpleClick checkpoint (any of its formats)."""
        from nfbench.models.base import ModelError
        from nfbench.models.blocks.checkpoints import read_state_dict
        from nfbench.models.simpleclick import load_mae_backbone, load_weights

        try:
            read_state_dict(path, model_name=self.model, key="model")
        except ModelError:
            return load_weights(network, path)
        load_mae_backbone(network, path)

    def prepare(self, image, label):
        return frame_case(image, label)

    def sampler(self, cases, *, lesion_rate, training):
        return ClipSampler(cases, 1, flip_rate=self.flip_rate if training else 0.0)

    # -- one batch -----------------------------------------------------------------------------
    def _views(self, clip: Clip) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[float, float]]:
        """The network's view of a sample: frame (or crop), lesion, first click in it, mm per model pixel."""
        frame, truth, (row, column) = clip.frames[0], clip.truth[0], clip.click
        if self.crop:
            corner = crop_window(frame.shape, (row, column), self.crop)
            frame, truth = cut_square(frame, corner, self.crop), cut_square(truth, corner, self.crop)
            row, column = row - corner[0], column - corner[1]
        size = self.config.image_size
        mm = (clip.spacing[1] * frame.shape[0] / size, clip.spacing[2] * frame.shape[1] / size)
        return frame, truth, (row, column), mm

    def sample_loss(self, samples, network, rng, device, *, amp):
        import torch
        from torch.nn import functional as F

        from nfbench.models.simpleclick import click_maps, frame_inputs, model_pixel

        size = self.config.image_size
        views = [self._views(clip) for clip in samples]
        images = torch.cat([frame_inputs(frame[None], size, device) for frame, *_ in views])
        truth = torch.cat([F.interpolate(torch.from_numpy(t[None, None].astype(np.float32)), size=(size, size),
                                         mode="nearest") for _, t, *_ in views]).to(device)
        goal = truth[:, 0].cpu().numpy() > 0.5
        clicks = [[(*model_pixel(*click, frame.shape, size), True)] for frame, _, click, _ in views]
        prev = torch.zeros_like(truth)

        def maps() -> torch.Tensor:
            disks = torch.from_numpy(np.stack([click_maps(c, size) for c in clicks])).to(device)
            return torch.cat([prev, disks], dim=1)

        training = network.training
        rounds = int(rng.integers(0, self.interactions + 1))
        if rounds:
            network.eval()
            with torch.no_grad():
                tokens = network.embed_image(images)
                for _ in range(rounds):
                    prev = torch.sigmoid(network.decode(tokens, maps()).float())
                    pred = prev[:, 0].cpu().numpy() > _PRED_THRESHOLD
                    for i, (*_, mm) in enumerate(views):
                        for click in next_clicks(pred[i][None], goal[i][None], spacing=(1.0, *mm), rng=rng,
                                                 policy=self.click_policy):
                            clicks[i].append((int(click.ijk[1]), int(click.ijk[2]), click.positive))
            network.train(training)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = network(images, maps())
        return normalized_focal_loss(logits, truth, alpha=self.alpha, gamma=self.gamma).mean()

    def sample_dice(self, network, samples, rng, device, *, amp=False):
        """Dice on each validation frame after the first click and after the corrections, as SliceClicker answers."""
        from nfbench.models.simpleclick import SliceClicker

        clicker = SliceClicker(network, device=str(device), crop=self.crop, cache=0)
        dice: dict[str, list[float]] = {"first": [], "last": []}
        for clip in samples:
            frame, truth = clip.frames[0], clip.truth[0]
            clicks = [(clip.click[0], clip.click[1], True)]
            mask = clicker.predict(frame, clicks, None)
            dice["first"].append(_dice(mask, truth))
            for _ in range(self.interactions):
                new = next_clicks(mask[None], truth[None], spacing=(1.0, *clip.spacing[1:]), rng=rng,
                                  policy=self.click_policy)
                if not new:
                    break
                clicks.append((int(new[0].ijk[1]), int(new[0].ijk[2]), new[0].positive))
                mask = clicker.predict(frame, clicks, mask)
            dice["last"].append(_dice(mask, truth))
        return {key: float(np.mean(values)) for key, values in dice.items()}

    # -- optimisation --------------------------------------------------------------------------
    def optimizer(self, network, lr):
        import torch

        return torch.optim.Adam(network.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def scheduler(self, optimizer, epochs):
        import torch

        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones(epochs), gamma=0.1)

    def save_weights(self, network, path):
        from nfbench.models.simpleclick import save_weights

        save_weights(network, path, crop=self.crop)


def milestones(epochs: int) -> list[int]:
    """The original's [50, 55] of 55 epochs as fractions of ``epochs``."""
    return sorted({max(1, round(epochs * 50 / 55)), max(1, epochs)})


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


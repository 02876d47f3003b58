"""How STCN trains (seed_spec §5.5): 3-frame clips of coronal frames, the first frame's lesion given, the rest propagated.

As STCN's main training (``model/model.py``, single object) and the NF original's stage-6
fine-tuning: a :class:`~nfbench.train.data.ClipSampler` clip of 3 consecutive frames of one case
(the layout of ``nfbench data slice``, as :class:`~nfbench.models.stcn.Propagator` sees them at
evaluation) that starts on a lesion voxel, running forwards or backwards; the first frame's
ground-truth mask of that lesion is encoded into the memory, frame 2 is segmented from it, its
predicted probability is encoded in turn, and frame 3 is segmented from both (the memory read
over all positions, as STCN trains; ``top_k`` only at evaluation); the other lesions are
background. Loss: STCN's bootstrapped cross-entropy of the aggregated background/object logits on
frames 2 and 3, per clip then averaged. Adam with weight decay 1e-7 at a constant learning rate
(STCN decays ×0.1 at 10,000 of 10,000 iterations, so never). Frames are cropped around the first
click and flipped left–right with p = 0.5.

Two settings depend on the start:

- fine-tuning (``--init``, the NF original's stage 6 from ``stcn.pth``): crops of at most 384
  pixels a side (the original: a random resized crop to 384 × 384, scale 0.8–1.0); plain
  cross-entropy for the first 20,000 steps, then over the hardest pixels, a share falling linearly
  to 15 % at step 70,000 (STCN's schedule: the NF fine-tuning's 10,000 iterations never left the
  plain part); every batch norm in evaluation mode, as STCN trains (its statistics are ImageNet's);
- from random initialisation (nfbench's phantom training; STCN itself always started from
  ImageNet): crops of 128 pixels and the hardest 15 % of the pixels from the first step, batch
  norm statistics learned. On the phantoms a lesion covers well under 1 % of a 384-pixel crop:
  plain cross-entropy there learns "background everywhere" (validation Dice 0 after 180 steps at
  lr 1e-3, against 0.7 after 240 with these settings).

Learning rate: 1e-5 by default (STCN's from ImageNet initialisation); the original fine-tuned from
``stcn.pth`` at 1e-6 (``--lr 1e-6 --init stcn.pth``); from scratch on the phantoms 1e-3 learns in
minutes. Left out: the max-skip schedule (clips are consecutive frames; the original's skips of
1–2 frames would jump 8–16 mm), the cycle loss (``--use_cycle_loss`` of the NF fork, whose code is
not public), affine and colour augmentation, the second object of STCN's multi-object training.

Validation: on ``val_patches`` fixed clips of the validation cases, whole frames,
:class:`~nfbench.models.stcn.Propagator` (``top_k`` 20) from the first frame's mask; the Dice of
the propagated frames (``val_dice_1`` = ``val_dice_last``) picks the best epoch.

Weights are written as ``stcn.pth`` is, a plain state dict, which
:func:`~nfbench.models.stcn.load_weights` loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nfbench.models.blocks.stcn_network import STCNConfig, build_network, load_weights
from nfbench.models.stcn import FrameGeometry, Propagator
from nfbench.train.data import Clip, ClipSampler, frame_case
from nfbench.train.recipes import Recipe

__all__ = ["STCNRecipe", "bootstrapped_ce", "bootstrap_share"]


def bootstrap_share(step: int, start: int = 20_000, end: int = 70_000, top: float = 0.15) -> float:
    """STCN's share of the hardest pixels the loss keeps at a training step: 1 before ``start``, ``top`` from ``end``."""
    if step < start:
        return 1.0
    if step >= end:
        return top
    return top + (1 - top) * (end - step) / (end - start)


def bootstrapped_ce(logits, target, share: float):
    """Mean over samples of the mean cross-entropy of each sample's ``share`` highest-loss pixels.

    ``logits`` ``(B, 2, H, W)``, ``target`` ``(B, H, W)`` class indices.
    """
    import torch
    from torch.nn import functional as F

    pixels = F.cross_entropy(logits.float(), target, reduction="none").flatten(1)
    if share >= 1:
        return pixels.mean(1).mean()
    keep = max(1, int(pixels.shape[1] * share))
    return torch.topk(pixels, keep, dim=1, sorted=False).values.mean(1).mean()


class STCNRecipe(Recipe):
    """STCN trained on 3-frame clips of coronal frames; see the module docstring."""

    model = "stcn"
    defaults = {"stcn_config": "original"}
    lr = 1e-5
    flip_rate = 0.5
    weight_decay = 1e-7
    frames = 3
    top_k = 20
    original_crop, original_warm_up = 384, (20_000, 70_000)
    """Fine-tuning (``--init``): STCN's crop and the steps its bootstrapped cross-entropy starts and ends warming up."""
    scratch_crop, scratch_warm_up = 128, (0, 0)
    """From random initialisation: the hardest 15 % from the first step."""
    interactions = 0
    """No clicks: the first frame's mask is given."""
    evaluated = False
    settings = ()

    def __init__(self, options: Mapping[str, object]) -> None:
        super().__init__(options)
        self.config = STCNConfig.named(str(self.options["stcn_config"]))
        self.freeze_bn = False
        self.crop, self.warm_up = self.scratch_crop, self.scratch_warm_up
        self._steps_sampler: ClipSampler | None = None

    def build_network(self):
        return build_network(self.config)

    def load_init(self, network, path):
        """``stcn.pth`` (a 4-channel single-object file too), our ``best.pt`` or ``last.pt``; then the original's settings."""
        load_weights(network, path, model_name=self.model)
        self.freeze_bn = True
        self.crop, self.warm_up = self.original_crop, self.original_warm_up

    def prepare(self, image, label):
        return frame_case(image, label)

    def sampler(self, cases, *, lesion_rate, training):
        sampler = ClipSampler(cases, self.frames, flip_rate=self.flip_rate if training else 0.0)
        if training:
            self._steps_sampler = sampler  # its draws count the steps, and resume restores them
        return sampler

    # -- one batch of clips ------------------------------------------------------------------------
    def _crops(self, clips: Sequence[Clip], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Frames and lesion masks ``(B, T, rows, cols)``, cropped to one size around each clip's first click."""
        rows = min(self.crop, *(c.frames.shape[1] for c in clips))
        cols = min(self.crop, *(c.frames.shape[2] for c in clips))
        frames, truth = [], []
        for clip in clips:
            (row, col), (n_rows, n_cols) = clip.click, clip.frames.shape[1:]
            top = int(rng.integers(max(0, row - rows + 1), min(row, n_rows - rows) + 1))
            left = int(rng.integers(max(0, col - cols + 1), min(col, n_cols - cols) + 1))
            frames.append(clip.frames[:, top:top + rows, left:left + cols])
            truth.append(clip.truth[:, top:top + rows, left:left + cols])
        return np.stack(frames), np.stack(truth)

    def sample_loss(self, samples, network, rng, device, *, amp):
        import torch
        from torch import nn

        if network.training and self.freeze_bn:
            for module in network.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        frames, truth = self._crops(samples, rng)
        batch, length = frames.shape[:2]
        geometry = FrameGeometry.of(frames.shape[2:])
        images = geometry.to_network(frames.reshape(-1, *frames.shape[2:]), device, image=True)
        masks = geometry.to_network(truth.reshape(-1, *truth.shape[2:]), device, image=False)
        target = masks[:, 0].round().long().view(batch, length, *masks.shape[-2:])
        masks = masks.view(batch, length, *masks.shape[1:])
        images = images.view(batch, length, *images.shape[1:])
        draws = self._steps_sampler._draws if self._steps_sampler is not None else 0
        share = bootstrap_share(max(draws - 1, 0) // max(batch, 1), *self.warm_up)
        with torch.autocast(device.type, dtype=getattr(torch, self.amp_dtype), enabled=amp):
            key, comp, f16, f8, f4 = (x.view(batch, length, *x.shape[1:])
                                      for x in network.encode_key(images.flatten(0, 1)))
            keys = [key[:, 0].flatten(2)]
            values = [network.encode_value(images[:, 0], f16[:, 0], masks[:, 0]).flatten(2)]
            loss = torch.zeros((), device=device)
            for t in range(1, length):
                logits, prob = network.segment(key[:, t], comp[:, t], f8[:, t], f4[:, t], torch.cat(keys, 2),
                                               torch.cat(values, 2))
                loss = loss + bootstrapped_ce(logits, target[:, t], share)
                if t + 1 < length:
                    keys.append(key[:, t].flatten(2))
                    values.append(network.encode_value(images[:, t], f16[:, t], prob).flatten(2))
        return loss

    def sample_dice(self, network, samples, rng, device, *, amp=False):
        """Dice of the frames propagated from each clip's first frame, pooled over all clips.

        Pooled, not averaged per clip: a lesion that ends after the first frame would count 1 for
        an empty answer and 0 for a single stray pixel.
        """
        overlap = total = 0
        for clip in samples:
            masks = Propagator(network, clip.frames, device=str(device), top_k=self.top_k).propagate(
                {0: clip.truth[0]}, stop_empty=False)
            pred = np.stack([masks[t] for t in range(1, len(clip.indices))])
            overlap += int((pred & clip.truth[1:]).sum())
            total += int(pred.sum() + clip.truth[1:].sum())
        score = 1.0 if total == 0 else 2 * overlap / total
        return {"first": score, "last": score}

    # -- optimisation ------------------------------------------------------------------------------
    def optimizer(self, network, lr):
        import torch

        return torch.optim.Adam(network.parameters(), lr=lr, weight_decay=self.weight_decay)

    def scheduler(self, optimizer, epochs):
        import torch

        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)

    def save_weights(self, network, path):
        import torch

        torch.save(network.state_dict(), path)

"""How SAM2 fine-tunes (seed_spec §5.3): clips of coronal frames, simulated clicks, SAM2's loss and optimiser.

A case is its stack of frames (:class:`~nfbench.models.blocks.frames.FrameStack`, the layout of
``nfbench data slice``: the view the ``sam2`` evaluation model sees), 0–255 as the sliced PNGs.
A training sample is a :class:`~nfbench.train.data.ClipSampler` clip of ``frames`` consecutive
frames starting on a lesion voxel, which is the first click; frames are resized to the square
``image_size`` (bilinear, antialiased; the label nearest), repeated to RGB and normalised with the
ImageNet statistics, as SAM2 evaluates (the original fine-tuned on unnormalised frames and
evaluated on normalised ones, §5.3). :mod:`nfbench.train.sam2_clips` runs SAM2 through the clip.

As the original: ``interactions`` (default 7) corrective clicks on frame 0 and, in half the
training clips, on one more random frame; 10 % of them drawn from the lesion instead of the
error; AdamW, lr 5e-6 outside the image encoder and 3e-6 in it (``lr`` scales both), layer decay
0.9 over the Hiera trunk's blocks, weight decay 0.1 (none on biases and LayerNorm), cosine to a
tenth, gradient norm clipped at 0.1, bfloat16 autocast on CUDA, left–right flips (p = 0.5).
Simplified: one lesion per clip (the original: up to 3 objects), one initial conditioning frame
(1–2), no affine augmentation, the schedule stepped per epoch (per iteration), clicks from
nfbench's ``click_policy``; clips run forwards or backwards. The original used ``--batch-size 1``.

Validation (no evaluation model is needed): on ``val_patches`` fixed clips of the validation
cases, the loss as in training with the corrections on frame 0 only, and the Dice of the masks
propagated through the clip after the first click alone (``val_dice_1``) and after the
corrections (``val_dice_last``, which picks the best epoch).

Weights are written as SAM2 releases them, ``{"model": state_dict}``, which
``sam2.build_sam.build_sam2(config, ckpt_path=...)`` loads (with ``++model.image_size=...`` when
trained at another size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nfbench.models.blocks.sam2_frames import CONFIG, build_network, load_weights, model_images, model_point
from nfbench.train.data import Clip, ClipSampler, frame_arrays
from nfbench.train.recipes import Recipe
from nfbench.train.sam2_clips import clip_dice, clip_loss, track_clip

__all__ = ["CONFIG", "SAM2Recipe", "build_sam2_network", "model_point"]

def build_sam2_network(config: str, image_size: int, *, device: str = "cpu"):
    """SAM2 from one of the ``sam2`` package's configurations (or a yaml file) at ``image_size``, in training mode."""
    return build_network(config, image_size, training=True, device=device)


class SAM2Recipe(Recipe):
    """SAM2 fine-tuned on clips of coronal frames; see the module docstring."""

    model = "sam2"
    defaults = {"config": CONFIG, "image_size": 1024}
    lr = 5e-6
    vision_share = 0.6
    """The image encoder's lr relative to the rest (the original: 3e-6 against 5e-6)."""
    layer_decay = 0.9
    weight_decay = 0.1
    gt_rate = 0.1
    flip_rate = 0.5
    amp_dtype = "bfloat16"
    clip_norm = 0.1
    evaluated = False
    settings = ("interactions", "click_policy", "frames")

    def __init__(self, options: Mapping[str, object], *, interactions: int | None = None,
                 click_policy: str = "edt-power", frames: int = 8) -> None:
        super().__init__(options)
        self.config = str(self.options["config"])
        try:
            self.image_size = int(self.options["image_size"])  # type: ignore[call-overload]
        except ValueError:
            self.image_size = 0
        if self.image_size < 64 or self.image_size % 32:
            raise ValueError(f"model 'sam2': image_size must be a multiple of 32 and >= 64, got "
                             f"{self.options['image_size']!r}")
        self.interactions = 7 if interactions is None else int(interactions)
        self.click_policy = click_policy
        self.frames = int(frames)

    def build_network(self):
        return build_sam2_network(self.config, self.image_size)

    def load_init(self, network, path):
        """SAM2's released format (``{"model": ...}``, also our ``best.pt``), a plain state dict, or our ``last.pt``."""
        load_weights(network, path)

    def prepare(self, image, label):
        return frame_arrays(image, label)

    def sampler(self, cases, *, lesion_rate, training):
        return ClipSampler(cases, self.frames, flip_rate=self.flip_rate if training else 0.0)

    # -- one clip ------------------------------------------------------------------------------
    def _inputs(self, clip: Clip, device):
        """Normalised model frames ``(T, 3, S, S)``, the lesion ``(T, S, S)`` and the first click ``(x, y)``."""
        import torch
        from torch.nn import functional as F

        size = (self.image_size, self.image_size)
        images = model_images(clip.frames, self.image_size, device)
        truth = F.interpolate(torch.from_numpy(clip.truth)[:, None].float(), size=size, mode="nearest")[:, 0] > 0
        click = model_point(*clip.click, clip.frames.shape[1:], self.image_size)
        return images, truth.to(device), click

    def _track(self, network, clip: Clip, rng, device, *, corrections: int, extra: bool):
        images, truth, click = self._inputs(clip, device)
        n, rows, columns = clip.frames.shape
        corrected = {0}
        if extra and n > 1 and rng.random() < 0.5:  # SAM2: corrections on 1–2 frames, the first always
            corrected.add(int(rng.integers(1, n)))
        spacing = (clip.spacing[0], clip.spacing[1] * rows / self.image_size, clip.spacing[2] * columns / self.image_size)
        results = track_clip(network, images, truth.cpu().numpy(), click, corrections=corrections,
                             corrected=corrected, policy=self.click_policy, spacing=spacing, rng=rng,
                             gt_rate=self.gt_rate if extra else 0.0)
        return results, truth

    def sample_loss(self, samples, network, rng, device, *, amp):
        import torch

        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            losses = [clip_loss(*self._track(network, clip, rng, device, corrections=self.interactions,
                                             extra=network.training)) for clip in samples]
        return torch.stack(losses).mean()

    def sample_dice(self, network, samples, rng, device, *, amp=False):
        import torch

        dice: dict[str, list[float]] = {"first": [], "last": []}
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for clip in samples:
                for key, corrections in (("first", 0), ("last", self.interactions)):
                    dice[key].append(clip_dice(*self._track(network, clip, rng, device, corrections=corrections,
                                                            extra=False)))
        return {key: float(np.mean(values)) for key, values in dice.items()}

    # -- optimisation --------------------------------------------------------------------------
    def optimizer(self, network, lr):
        """AdamW with SAM2's parameter groups: encoder lr share, trunk layer decay, no decay on biases/LayerNorm."""
        import torch

        trunk = network.image_encoder.trunk
        layers = trunk.get_num_layers() + 1
        norms = {f"{m}.{p}" for m, module in network.named_modules() if isinstance(module, torch.nn.LayerNorm)
                 for p, _ in module.named_parameters(recurse=False)}
        groups: dict[tuple[float, float], list] = {}
        for name, parameter in network.named_parameters():
            scale = 1.0
            if name.startswith("image_encoder."):
                scale = self.vision_share
                if name.startswith("image_encoder.trunk.") and "pos_embed" not in name:
                    scale *= self.layer_decay ** (layers - trunk.get_layer_id(name))
            decay = 0.0 if name.endswith("bias") or name in norms else self.weight_decay
            groups.setdefault((scale, decay), []).append(parameter)
        ordered = sorted(groups.items(), key=lambda item: (-item[0][0], -item[0][1]))  # first: lr, the logged one
        return torch.optim.AdamW([{"params": params, "lr": lr * scale, "weight_decay": decay}
                                  for (scale, decay), params in ordered], lr=lr)

    def scheduler(self, optimizer, epochs):
        import torch

        def cosine(epoch: int) -> float:  # fvcore's CosineParamScheduler from 1 to 0.1
            return 0.1 + 0.45 * (1 + math.cos(math.pi * min(epoch, epochs) / max(epochs, 1)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)

    def save_weights(self, network, path):
        import torch

        torch.save({"model": network.state_dict()}, path)

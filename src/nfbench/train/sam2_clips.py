"""SAM2's training step on one clip: prompt the first frame, correct, propagate with memory, and its loss.

The ``sam2`` package ships no training code, so this is SAM2's own ``training/model/sam2.py``
(``SAM2Train.forward_tracking`` and ``_iter_correct_pt_sampling``) and ``training/loss_fns.py``
(``MultiStepMultiMasksAndIous``) written on :class:`sam2.modeling.sam2_base.SAM2Base`'s methods,
for one object (one lesion) per clip and points only, as the original's fine-tuning
(seed_spec §5.3: ``prob_to_use_pt_input_for_train 1.0``, no boxes):

- the image encoder runs once on the clip's frames; frame 0 gets the first click and is the one
  initial conditioning frame (SAM2 draws 1–2);
- each corrected frame gets ``corrections`` clicks one after another, each on the error of the
  previous prediction of that frame (with probability ``gt_rate`` drawn from the lesion instead, as
  ``prob_to_sample_from_gt_for_train``), the previous low-resolution logits fed back as the mask
  prompt; a corrected frame becomes a conditioning frame (``add_all_frames_to_correct_as_cond``);
- every frame's final mask is encoded into the memory the later frames attend to.

Clicks are nfbench's click policies on the model-resolution masks (SAM2 draws ``uniform`` from all
error pixels; ``uniform`` here draws from the largest error component).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nfbench.interaction.policies import next_clicks
from nfbench.models.blocks.sam2_frames import encode_frames, point_inputs

if TYPE_CHECKING:
    import torch

__all__ = ["FrameSteps", "track_clip", "clip_loss", "clip_dice", "LOSS_WEIGHTS"]

LOSS_WEIGHTS = {"mask": 20.0, "dice": 1.0, "iou": 1.0, "class": 1.0}
"""SAM2's fine-tuning weights: focal, Dice, IoU prediction (L1), object score."""
_FOCAL_ALPHA, _FOCAL_GAMMA = 0.25, 2.0


@dataclass
class FrameSteps:
    """SAM2's outputs on one frame: per step (tracking, then each correction) the multimask logits,
    predicted IoUs and object score; and the final mask logits that went into the memory."""

    masks: list[torch.Tensor] = field(default_factory=list)
    """High-resolution logits ``(1, M, S, S)`` (M = 3 multimask outputs or 1)."""
    ious: list[torch.Tensor] = field(default_factory=list)
    scores: list[torch.Tensor] = field(default_factory=list)
    final: torch.Tensor | None = None
    """``(1, 1, S, S)`` logits of the mask kept for the frame."""


def track_clip(model, images: torch.Tensor, truth: np.ndarray, click: tuple[float, float], *, corrections: int,
               corrected: Collection[int], policy: str, spacing: Sequence[float], rng: np.random.Generator,
               gt_rate: float = 0.0) -> list[FrameSteps]:
    """Run a clip through SAM2 with simulated clicks; one :class:`FrameSteps` per frame.

    ``images`` ``(T, 3, S, S)`` normalised; ``truth`` ``(T, S, S)`` bool, the lesion at model
    resolution; ``click`` ``(x, y)`` in model pixels, the positive first click on frame 0;
    ``corrected`` the frames that get ``corrections`` corrective clicks; ``spacing`` the mm of a
    model pixel ``(frame, row, column)`` for the click policy.
    """
    frames = images.shape[0]
    features = encode_frames(model, images)
    memory: dict[str, dict] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    results = []
    for t in range(frames):
        here = features.frame(t)
        coords, labels = ([click], [1]) if t == 0 else ([], [])
        points = point_inputs(coords, labels, images.device) if coords else None
        out, sam, high_res, pixels = model._track_step(t, t == 0, here.feats, here.positions, here.sizes, points, None,
                                                       memory, frames, False, None)
        _, multi, ious, low, high, pointer, score = sam
        steps = FrameSteps([multi], [ious], [score])
        for _ in range(corrections if t in corrected else 0):
            from_truth = rng.random() < gt_rate
            pred = np.zeros_like(truth[t]) if from_truth else (high[0, 0] > 0).detach().cpu().numpy()
            new = next_clicks(pred[None], truth[t][None], spacing=spacing, rng=rng, policy=policy)
            if not new:
                break
            coords.append((float(new[0].ijk[2]), float(new[0].ijk[1])))
            labels.append(int(new[0].positive))
            points = point_inputs(coords, labels, images.device)
            _, multi, ious, low, high, pointer, score = model._forward_sam_heads(
                backbone_features=pixels, point_inputs=points, mask_inputs=low, high_res_features=high_res,
                multimask_output=model._use_multimask(t == 0, points))
            steps.masks.append(multi)
            steps.ious.append(ious)
            steps.scores.append(score)
        out.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=pointer)
        model._encode_memory_in_output(here.feats, here.sizes, points, True, high, score, out)
        kind = "cond_frame_outputs" if t == 0 or (t in corrected and corrections) else "non_cond_frame_outputs"
        memory[kind][t] = out
        steps.final = high
        results.append(steps)
    return results


def clip_loss(results: Sequence[FrameSteps], truth: torch.Tensor) -> torch.Tensor:
    """SAM2's ``MultiStepMultiMasksAndIous`` for one object, summed over frames and steps.

    Per step: focal (α 0.25, γ 2, mean over pixels) and Dice of the multimask output with the
    lowest ``20·focal + dice`` (``supervise_all_iou``: the L1 IoU-prediction loss on all of them),
    counted only on frames where the lesion is present; binary cross-entropy of the object score.
    ``truth`` is ``(T, S, S)`` bool.
    """
    import torch
    from torch.nn import functional as F

    total = truth.new_zeros((), dtype=torch.float32)
    for steps, target in zip(results, truth.float()):
        present = target.any().float()
        for masks, ious, score in zip(steps.masks, steps.ious, steps.scores):
            goal = target.expand_as(masks)  # (1, M, S, S)
            prob = masks.sigmoid()
            ce = F.binary_cross_entropy_with_logits(masks, goal, reduction="none")
            p_t = prob * goal + (1 - prob) * (1 - goal)
            alpha = _FOCAL_ALPHA * goal + (1 - _FOCAL_ALPHA) * (1 - goal)
            focal = (alpha * ce * (1 - p_t) ** _FOCAL_GAMMA).flatten(2).mean(-1)  # (1, M)
            overlap, sizes = (prob * goal).flatten(2).sum(-1), prob.flatten(2).sum(-1) + goal.flatten(2).sum(-1)
            dice = 1 - (2 * overlap + 1) / (sizes + 1)
            hard = (masks > 0).flatten(2)
            union = (hard | (goal > 0).flatten(2)).sum(-1).clamp(min=1)
            actual = (hard & (goal > 0).flatten(2)).sum(-1) / union
            iou = F.l1_loss(ious.float(), actual.float(), reduction="none").mean(-1)
            best = torch.argmin(LOSS_WEIGHTS["mask"] * focal + LOSS_WEIGHTS["dice"] * dice, dim=-1)
            rows = torch.arange(masks.shape[0], device=masks.device)
            mask_loss = LOSS_WEIGHTS["mask"] * focal[rows, best] + LOSS_WEIGHTS["dice"] * dice[rows, best]
            total = total + present * (mask_loss + LOSS_WEIGHTS["iou"] * iou).sum()
            total = total + LOSS_WEIGHTS["class"] * F.binary_cross_entropy_with_logits(
                score.float().reshape(-1), present.reshape(1))
    return total


def clip_dice(results: Sequence[FrameSteps], truth: torch.Tensor) -> float:
    """Dice of the final masks over the whole clip (1 when mask and lesion are both empty)."""
    import torch

    pred = torch.cat([steps.final[0, 0][None] > 0 for steps in results])  # type: ignore[index]
    both = float((pred & truth).sum())
    total = float(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2 * both / total

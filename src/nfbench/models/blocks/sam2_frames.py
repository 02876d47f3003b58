"""What the ``sam2`` evaluation model and ``nfbench train sam2`` share: the network, its weights, its inputs.

- :func:`build_network`: SAM2 from a configuration of the ``sam2`` package (``configs/sam2.1/...``)
  or from a yaml file (the original's ``SAM2/fold_K/sam2.1_hiera_b+.yaml``), at any square
  ``image_size``; the file is read with OmegaConf and instantiated as ``sam2.build_sam`` does,
  without touching Hydra's global state (the original re-initialised it per model);
- :func:`load_weights`: a checkpoint loaded strictly, every missing or unexpected key named;
- :func:`model_images`: uint8 frames as SAM2's normalised square input (the same for training and
  evaluation); :func:`model_point` and :func:`point_inputs`: clicks and boxes in SAM2's terms;
- :func:`encode_frames`: the image encoder's per-frame features, flattened as SAM2's tracking
  step takes them.

torch and sam2 are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nfbench.models.base import ModelError
from nfbench.models.blocks.frames import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import torch

__all__ = ["CONFIG", "POSTPROCESSING", "build_network", "load_weights", "model_images", "model_point",
           "point_inputs", "encode_frames", "FrameFeatures"]

CONFIG = "configs/sam2.1/sam2.1_hiera_b+.yaml"
"""The original's configuration (SAM 2.1 Hiera base+)."""

POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
)
"""What ``build_sam2_video_predictor`` adds at evaluation (its ``apply_postprocessing``), except
``fill_hole_area``, a predictor setting the evaluation model applies itself."""


def build_network(config: str | Path, image_size: int, *, training: bool = False,
                  overrides: Sequence[str] = (), device: str = "cpu"):
    """SAM2 (``SAM2Base``) at ``image_size``, randomly initialised, in training or evaluation mode.

    ``config`` is an existing yaml file or the name of a configuration in the ``sam2`` package;
    ``overrides`` are Hydra-style ``++key=value`` settings applied on top.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    settings = [*overrides, f"++model.image_size={int(image_size)}"]
    path = Path(config)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        try:
            cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist([s.lstrip("+") for s in settings]))
        except Exception as err:  # noqa: BLE001 - OmegaConf raises many types for a broken yaml
            raise ModelError(f"model 'sam2': configuration {str(path)!r} cannot be read: {err}") from err
        if "model" not in cfg:
            raise ModelError(f"model 'sam2': configuration {str(path)!r} has no 'model' section (not a SAM2 config)")
    else:
        from hydra import compose
        from hydra.errors import MissingConfigException

        import sam2  # noqa: F401 - initialises Hydra on the sam2 package's configurations

        try:
            cfg = compose(config_name=str(config), overrides=settings)
        except MissingConfigException as err:
            raise ValueError(f"model 'sam2': no configuration {str(config)!r} in the sam2 package and no such yaml "
                             f"file (e.g. {CONFIG!r}, configs/sam2.1/sam2.1_hiera_t.yaml)") from err
    OmegaConf.resolve(cfg)
    network = instantiate(cfg.model, _recursive_=True).to(device)
    return network.train(training)


def load_weights(network, path: str | Path) -> None:
    """SAM2's released format (``{"model": state_dict}``, what ``nfbench train sam2`` writes), a plain
    state dict, or a training state's ``net``, loaded strictly.

    Raises
    ------
    ModelError
        Naming the file and, when it holds a state dict that does not fit, its missing and
        unexpected keys and shape mismatches.
    """
    from nfbench.models.blocks.checkpoints import load_checkpoint

    errors = []
    for key in ("model", None, "net"):
        try:
            return load_checkpoint(network, path, model_name="sam2", key=key)
        except ModelError as err:
            errors.append(err)
    fits = [e for e in errors if "does not fit" in str(e)]
    raise (fits or errors)[0]


def model_images(frames: np.ndarray, image_size: int, device) -> torch.Tensor:
    """uint8 frames ``(T, rows, columns)`` as SAM2's input ``(T, 3, S, S)``: 0–1, resized (bilinear,
    antialiased), repeated to RGB, ImageNet-normalised."""
    import torch
    from torch.nn import functional as F

    images = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)[:, None] / 255.0
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[None, :, None, None]
    return (images.expand(-1, 3, -1, -1) - mean) / std


def model_point(row: int, column: int, frame_shape: tuple[int, int], image_size: int) -> tuple[float, float]:
    """SAM2's ``(x, y)`` of a frame pixel in the square model frame: the pixel's centre, in model pixels
    (SAM's prompt encoder adds 0.5 to reach a pixel's centre)."""
    rows, columns = frame_shape
    return (column + 0.5) * image_size / columns - 0.5, (row + 0.5) * image_size / rows - 0.5


def point_inputs(coords: Sequence[tuple[float, float]], labels: Sequence[int], device) -> dict[str, torch.Tensor]:
    """SAM2's ``point_inputs`` of one object: ``(x, y)`` model pixels and labels (1 positive, 0 negative,
    2 and 3 a box's top-left and bottom-right corners, which come first)."""
    import torch

    return {"point_coords": torch.tensor([list(coords)], dtype=torch.float32, device=device).reshape(1, -1, 2),
            "point_labels": torch.tensor([list(labels)], dtype=torch.int32, device=device).reshape(1, -1)}


@dataclass(frozen=True)
class FrameFeatures:
    """The image encoder's output as SAM2's tracking step takes it: per level, ``(HW, T, C)`` tensors."""

    feats: list
    positions: list
    """Positional encodings; they depend on the image size only, so frames can share one copy."""
    sizes: list
    """``(H, W)`` per level."""

    def frame(self, t: int) -> FrameFeatures:
        """The features of frame ``t`` alone (views, no copy)."""
        return FrameFeatures([x[:, t:t + 1] for x in self.feats], [x[:, t:t + 1] for x in self.positions], self.sizes)


def encode_frames(network, images: torch.Tensor) -> FrameFeatures:
    """The image encoder on ``images`` ``(T, 3, S, S)``, flattened for the tracking step."""
    _, feats, positions, sizes = network._prepare_backbone_features(network.forward_image(images))
    return FrameFeatures(feats, positions, sizes)

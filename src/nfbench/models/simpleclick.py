"""SimpleClick on one 2D frame: configuration, weights, click disks and the per-slice predictor.

SimpleClick (``uncbiag/SimpleClick``; seed_spec §3.4, §5.4) is a plain ViT whose input patches are
the image's plus those of three click channels: the previous mask, disks of radius 5 around the
positive clicks and around the negative ones. The network (:mod:`nfbench.models.simpleclick_net`)
keeps the original's parameter names, so the published checkpoints (``{"state_dict": ...,
"config": ...}``, isegm's ``save_checkpoint``) load strictly, and MAE ViT weights
(``{"model": ...}``) initialise its backbone.

:class:`SliceClicker` answers clicks on one frame of :class:`~nfbench.models.blocks.frames.FrameStack`
as the original pipeline did (seed_spec §3.4): the gray frame repeated to RGB, resized to the square
``image_size`` (1024 in the original), 0–1 and ImageNet-normalised (isegm's ``BatchImageNormalize``),
the clicks as disks of radius 5 model pixels, the previous mask resized with the frame; the logits
resized back to the frame and thresholded at 0.5 on the sigmoid. What does not depend on the clicks
(the normalised frame and its patch embedding) is kept per frame ``key`` in a small LRU cache; the
ViT runs per click.

Options (``--model-option``) name :class:`SimpleClickConfig`'s fields: ``image_size``,
``patch_size``, ``embed_dim``, ``depth``, ``heads``, ``neck`` (four widths, ``"128,256,512,1024"``)
and ``head_channels``. The default is the original ViT-B/16 at 1024 × 1024; :data:`REDUCED` is the
CPU configuration of the phantom weights, which were trained with ``crop=64`` (beyond the original:
the network sees a 64-pixel square around the first click instead of the whole frame, so a lesion
of a few pixels covers more than one patch). :meth:`SliceClicker.from_weights` reads both from a
checkpoint's ``config``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nfbench.models.base import ModelError

if TYPE_CHECKING:
    import torch

    from nfbench.models.simpleclick_net import SimpleClickNet

__all__ = ["SimpleClickConfig", "ORIGINAL", "REDUCED", "DISK_RADIUS", "THRESHOLD", "SliceClicker", "build_network",
           "load_weights", "load_mae_backbone", "save_weights", "checkpoint_options", "click_maps", "model_pixel", "frame_inputs",
           "resize_masks", "crop_window", "cut_square", "paste_square"]

NAME = "simpleclick"
DISK_RADIUS = 5
"""Click disks: model pixels within 5 of the click (isegm ``DistMaps(norm_radius=5, use_disks=True)``)."""
THRESHOLD = 0.5
_CACHE = 8
_ISEGM = ("isegm.",)
"""A published checkpoint's ``config`` pickles isegm objects (its head's ``loss_decode``): read as stand-ins."""


@dataclass(frozen=True)
class SimpleClickConfig:
    """The sizes that fix SimpleClick's network; the defaults are the original ViT-B/16 at 1024 × 1024."""

    image_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    heads: int = 12
    neck: tuple[int, int, int, int] = (128, 256, 512, 1024)
    head_channels: int = 256
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        neck = tuple(self.neck)
        whole = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("neck", "mlp_ratio")}
        bad = [f"{k}={v!r}" for k, v in whole.items() if not isinstance(v, int) or v < 1]
        if len(neck) != 4 or any(not isinstance(c, int) or c < 1 for c in neck):
            bad.append(f"neck={self.neck!r} (four positive widths)")
        if not bad:
            if self.image_size % self.patch_size:
                bad.append(f"image_size={self.image_size} (a multiple of patch_size {self.patch_size})")
            elif self.grid % 2:
                bad.append(f"image_size={self.image_size} (image_size / patch_size must be even)")
            elif self.grid % max(1, self.grid // max(1, 224 // self.patch_size)):
                bad.append(f"image_size={self.image_size} (the patch grid must split evenly into 224-pixel windows)")
            if self.embed_dim % self.heads:
                bad.append(f"heads={self.heads} (must divide embed_dim {self.embed_dim})")
            if self.depth % 4:
                bad.append(f"depth={self.depth} (a multiple of 4, as the original's block groups)")
            if self.head_channels % 4:
                bad.append(f"head_channels={self.head_channels} (a multiple of 4)")
        if bad:
            raise ValueError(f"model {NAME!r}: bad configuration: {'; '.join(bad)}")
        object.__setattr__(self, "neck", neck)

    @property
    def grid(self) -> int:
        """Patches along each side."""
        return self.image_size // self.patch_size

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> SimpleClickConfig:
        """A configuration from ``--model-option`` values (strings or numbers); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"model {NAME!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in options.items():
            try:
                if key == "neck":
                    parts = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[attr-defined]
                    values[key] = tuple(int(str(p).strip()) for p in parts)
                elif key == "mlp_ratio":
                    values[key] = float(value)  # type: ignore[arg-type]
                else:
                    values[key] = int(str(value).strip())
            except (TypeError, ValueError):
                raise ValueError(f"model {NAME!r}: option {key}={value!r} is not a number"
                                 f"{' list (e.g. 128,256,512,1024)' if key == 'neck' else ''}") from None
        return cls(**values)

    def options(self) -> dict[str, str]:
        """The configuration as ``--model-option`` strings."""
        return {k: ",".join(map(str, v)) if k == "neck" else str(v) for k, v in asdict(self).items()}


ORIGINAL = SimpleClickConfig()
REDUCED = SimpleClickConfig(image_size=256, patch_size=16, embed_dim=96, depth=4, heads=4, neck=(32, 64, 128, 256),
                            head_channels=64)
"""The CPU configuration of the phantom weights (≈ 1 M parameters, ≈ 4 MB)."""


def build_network(config: SimpleClickConfig = ORIGINAL) -> SimpleClickNet:
    """SimpleClick's network at ``config``, randomly initialised from torch's generator."""
    from nfbench.models.simpleclick_net import SimpleClickNet

    return SimpleClickNet(config)


def _describe(config: SimpleClickConfig) -> str:
    return (f"SimpleClick (image {config.image_size}, patch {config.patch_size}, embed {config.embed_dim}, "
            f"depth {config.depth}, heads {config.heads}, neck {','.join(map(str, config.neck))}, "
            f"head {config.head_channels})")


def load_weights(network: SimpleClickNet, path: str | Path) -> None:
    """A SimpleClick checkpoint, strictly: the original's ``{"state_dict": ...}`` (ours too), a plain
    state dict, or a training run's ``last.pt`` (``{"net": ...}``)."""
    from nfbench.models.blocks.checkpoints import load_checkpoint

    errors = []
    for key in ("state_dict", None, "net"):
        try:
            return load_checkpoint(network, path, model_name=NAME, key=key, network=_describe(network.config),
                                   stand_in=_ISEGM)
        except ModelError as err:
            errors.append(err)
    fits = [e for e in errors if "does not fit" in str(e)]
    raise (fits or errors)[0]


def checkpoint_options(path: str | Path) -> dict[str, str]:
    """The options a checkpoint was built with, from its ``config`` entry: ours (the network's sizes and
    ``crop``) or a published one's (isegm's ``backbone_params``, ``neck_params`` and ``head_params``).
    Empty when the file holds no config (a plain state dict)."""
    from nfbench.models.blocks.checkpoints import read_checkpoint

    saved = read_checkpoint(path, model_name=NAME, stand_in=_ISEGM)
    params = saved.get("config", {}).get("params", {}) if isinstance(saved, Mapping) else {}
    if "backbone_params" not in params:
        return {str(k): str(v) for k, v in params.items()}

    def value(name: str) -> dict:
        entry = params.get(name, {})
        return entry.get("value", {}) if isinstance(entry, Mapping) else {}

    backbone, neck, head = value("backbone_params"), value("neck_params"), value("head_params")
    first = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731 - (rows, cols) pairs
    found = {"image_size": first(backbone.get("img_size")), "patch_size": first(backbone.get("patch_size")),
             "embed_dim": backbone.get("embed_dim"), "depth": backbone.get("depth"), "heads": backbone.get("num_heads"),
             "mlp_ratio": backbone.get("mlp_ratio"), "head_channels": head.get("channels"),
             "neck": ",".join(map(str, neck["out_dims"])) if "out_dims" in neck else None}
    return {k: str(v) for k, v in found.items() if v is not None}


def save_weights(network: SimpleClickNet, path: str | Path, **preprocessing: object) -> None:
    """The original's format, ``{"state_dict": ..., "config": ...}``, the config as plain strings
    (the network's sizes and the given ``preprocessing`` options, e.g. ``crop``)."""
    import torch

    params = {**network.config.options(), **{k: str(v) for k, v in preprocessing.items()}}
    config = {"class": "nfbench.models.simpleclick_net.SimpleClickNet", "params": params}
    torch.save({"state_dict": network.state_dict(), "config": config}, path)


def load_mae_backbone(network: SimpleClickNet, path: str | Path) -> None:
    """MAE ViT weights (``{"model": ...}``) into the backbone, as the original fine-tuning started (§5.4).

    Every ``patch_embed.``, ``blocks.`` and ``pos_embed`` tensor of the backbone must be in the file
    with its shape (the positional embedding is interpolated bicubically when the grid differs);
    ``cls_token`` is taken when present. The MAE encoder's final ``norm``, a classifier and a decoder
    are not part of SimpleClick and are left out, as the original's non-strict load did.
    """
    import torch

    from nfbench.models.blocks.checkpoints import read_state_dict, state_dict_problems

    state = read_state_dict(path, model_name=NAME, key="model", stand_in=_ISEGM)
    backbone = network.backbone
    expected = {k: v for k, v in backbone.state_dict().items() if k.startswith(("patch_embed.", "blocks.", "pos_embed"))}
    taken = {k: v for k, v in state.items() if k in expected}
    if "pos_embed" in taken and taken["pos_embed"].shape != expected["pos_embed"].shape:
        taken["pos_embed"] = _resize_positions(taken["pos_embed"], backbone.grid)
    problems = [p for p in state_dict_problems(taken, expected) if "unexpected" not in p]
    if not any(k.startswith("blocks.") for k in state):
        problems.insert(0, "no ViT blocks (keys blocks.N...) in its 'model' entry")
    if problems:
        raise ModelError(f"model {NAME!r}: MAE weight file {str(path)!r} does not fit the backbone of "
                         f"{_describe(network.config)}: {'; '.join(problems)}")
    if "cls_token" in state and state["cls_token"].shape == backbone.cls_token.shape:
        taken["cls_token"] = state["cls_token"]
    with torch.no_grad():
        backbone.load_state_dict(taken, strict=False)


def _resize_positions(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """A ``(1, 1 + g², C)`` positional embedding resized to ``grid²`` patches (the class token kept)."""
    import torch
    from torch.nn import functional as F

    old = int(round((pos.shape[1] - 1) ** 0.5))
    if old * old != pos.shape[1] - 1:
        return pos  # not square: left to the shape check
    patches = pos[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)], dim=1)


def model_pixel(row: int, column: int, frame_shape: tuple[int, int], image_size: int) -> tuple[int, int]:
    """The model pixel ``(row, column)`` of a frame pixel: its centre mapped to the square frame, rounded
    (the original clicked on integer pixels of the resized image)."""
    rows, columns = frame_shape
    r = int(round((row + 0.5) * image_size / rows - 0.5))
    c = int(round((column + 0.5) * image_size / columns - 0.5))
    return min(max(r, 0), image_size - 1), min(max(c, 0), image_size - 1)


def click_maps(clicks: Sequence[tuple[int, int, bool]], size: int, radius: float = DISK_RADIUS) -> np.ndarray:
    """Positive and negative disk maps ``(2, size, size)`` float32 of model-pixel clicks ``(row, col, positive)``."""
    maps = np.zeros((2, size, size), np.float32)
    if not clicks:
        return maps
    rows, columns = np.arange(size)[:, None], np.arange(size)[None, :]
    for r, c, positive in clicks:
        maps[0 if positive else 1][(rows - r) ** 2 + (columns - c) ** 2 <= radius ** 2] = 1.0
    return maps


def frame_inputs(frames: np.ndarray, image_size: int, device) -> torch.Tensor:
    """uint8 frames ``(B, rows, columns)`` as normalised RGB ``(B, 3, S, S)`` (bilinear, antialiased)."""
    from nfbench.models.blocks.sam2_frames import model_images

    return model_images(frames, image_size, device)


def resize_masks(masks: np.ndarray, image_size: int, device) -> torch.Tensor:
    """Masks ``(B, rows, columns)`` (bool or 0–1) resized to ``(B, 1, S, S)`` like the frames."""
    import torch
    from torch.nn import functional as F

    masks = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)).to(device)[:, None]
    return F.interpolate(masks, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)


def crop_window(shape: tuple[int, int], centre: tuple[int, int], crop: int) -> tuple[int, int]:
    """Top-left ``(row, column)`` of the ``crop``-pixel square around ``centre``, moved inside the frame
    where the frame is large enough (negative where it is smaller: the square is padded with zeros)."""
    start = []
    for n, c in zip(shape, centre):
        first = int(c) - crop // 2
        start.append(min(max(first, 0), n - crop) if n >= crop else (n - crop) // 2)
    return start[0], start[1]


def cut_square(array: np.ndarray, corner: tuple[int, int], crop: int) -> np.ndarray:
    """The ``crop × crop`` square of a 2D array at ``corner``, zero outside the array."""
    out = np.zeros((crop, crop), array.dtype)
    r0, c0 = corner
    rs, cs = slice(max(r0, 0), min(r0 + crop, array.shape[0])), slice(max(c0, 0), min(c0 + crop, array.shape[1]))
    out[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0] = array[rs, cs]
    return out


def paste_square(square: np.ndarray, corner: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """A ``crop × crop`` square put back into a zero array of ``shape`` (the inverse of :func:`cut_square`)."""
    out = np.zeros(shape, square.dtype)
    crop = square.shape[0]
    r0, c0 = corner
    rs, cs = slice(max(r0, 0), min(r0 + crop, shape[0])), slice(max(c0, 0), min(c0 + crop, shape[1]))
    out[rs, cs] = square[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]
    return out


class SliceClicker:
    """SimpleClick's answer to the clicks on one frame, at the frame's resolution (see the module doc).

    Parameters
    ----------
    network : SimpleClickNet
        The network (moved to ``device`` and set to evaluation mode here).
    device : str
        ``cpu`` or ``cuda``.
    threshold : float
        On the sigmoid of the logits (0.5, as the original).
    radius : int
        Click disks' radius in model pixels (5, as the original).
    threads : int
        PyTorch's intra-op threads, set for the process here; 0 keeps PyTorch's default.
    cache : int
        Frames whose preprocessing and patch embedding are kept (least recently used dropped).
    crop : int
        0 (the original): the whole frame goes to the network. Otherwise a square of ``crop`` frame
        pixels centred on the first click (moved inside the frame) is what is resized to
        ``image_size``, and the mask is empty outside it: weights trained so (the phantom weights,
        ``crop=64``) see small lesions at a resolution a CPU-sized network can resolve.
    """

    def __init__(self, network: SimpleClickNet, *, device: str = "cpu", threshold: float = THRESHOLD,
                 radius: int = DISK_RADIUS, threads: int = 0, cache: int = _CACHE, crop: int = 0) -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.size = network.config.image_size
        self.logit = float(np.log(threshold / (1 - threshold)))
        self.radius = radius
        self.capacity = int(cache)
        self.crop = int(crop)
        self._cache: OrderedDict[Hashable, tuple[np.ndarray, torch.Tensor]] = OrderedDict()

    @classmethod
    def from_weights(cls, path: str | Path, *, options: Mapping[str, object] | None = None,
                     **settings: Any) -> SliceClicker:
        """The predictor of a checkpoint: the network's sizes and ``crop`` from the file's ``config``
        (:func:`checkpoint_options`), overridden by ``options`` (needed for a plain state dict), the
        weights loaded strictly; ``settings`` are the constructor's (``device``, ``threads``, …)."""
        given = {**checkpoint_options(path), **(options or {})}
        crop = given.pop("crop", settings.pop("crop", 0))
        try:
            crop = int(str(crop))
        except ValueError:
            raise ValueError(f"model {NAME!r}: option crop={crop!r} is not a whole number") from None
        network = build_network(SimpleClickConfig.from_options(given))
        load_weights(network, path)
        return cls(network, crop=crop, **settings)

    def image_tokens(self, frame: np.ndarray, key: Hashable | None = None) -> torch.Tensor:
        """The patch tokens ``(1, N, C)`` of a frame (or of its crop), from the cache when ``key`` was
        seen with a frame of this shape."""
        import torch

        if key is not None and key in self._cache:
            shape, tokens = self._cache[key]
            if shape == frame.shape:
                self._cache.move_to_end(key)
                return tokens
        with torch.inference_mode():
            tokens = self.network.embed_image(frame_inputs(frame[None], self.size, self.device))
        if key is not None and self.capacity > 0:
            self._cache[key] = (frame.shape, tokens)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return tokens

    def window(self, frame_shape: tuple[int, int], clicks: Sequence[tuple[int, int, bool]],
               previous: np.ndarray | None) -> tuple[int, int] | None:
        """The crop's top-left corner (None: the whole frame): around the first click, else the previous
        mask's middle, else the frame's."""
        if not self.crop:
            return None
        if clicks:
            centre = (int(clicks[0][0]), int(clicks[0][1]))
        elif previous is not None and np.any(previous):
            rows, columns = np.nonzero(previous)
            centre = ((int(rows.min()) + int(rows.max())) // 2, (int(columns.min()) + int(columns.max())) // 2)
        else:
            centre = (frame_shape[0] // 2, frame_shape[1] // 2)
        return crop_window(frame_shape, centre, self.crop)

    def logits(self, frame: np.ndarray, clicks: Sequence[tuple[int, int, bool]], previous: np.ndarray | None, *,
               key: Hashable | None = None) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """Logits at the resolution of the frame (or of its crop) and the crop's corner (None: no crop)."""
        import torch
        from torch.nn import functional as F

        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"model {NAME!r}: a frame must be 2D (rows, columns), got shape {frame.shape}")
        if previous is not None and np.shape(previous) != frame.shape:
            raise ValueError(f"model {NAME!r}: previous mask of shape {np.shape(previous)} is not the frame's {frame.shape}")
        corner = self.window(frame.shape, clicks, previous)
        if corner is not None:
            frame = cut_square(frame, corner, self.crop)
            previous = None if previous is None else cut_square(np.asarray(previous, bool), corner, self.crop)
            clicks = [(r - corner[0], c - corner[1], p) for r, c, p in clicks]
            key = None if key is None else (key, corner)
        tokens = self.image_tokens(frame, key)
        points = [(*model_pixel(r, c, frame.shape, self.size), bool(p)) for r, c, p in clicks]
        maps = torch.from_numpy(click_maps(points, self.size, self.radius)).to(self.device)[None]
        prev = (resize_masks(np.asarray(previous)[None], self.size, self.device) if previous is not None
                else torch.zeros((1, 1, self.size, self.size), device=self.device))
        with torch.inference_mode():
            logits = self.network.decode(tokens, torch.cat([prev, maps], dim=1))
            return F.interpolate(logits, size=frame.shape, mode="bilinear", align_corners=False)[0, 0], corner

    def predict(self, frame: np.ndarray, clicks: Sequence[tuple[int, int, bool]], previous: np.ndarray | None, *,
                key: Hashable | None = None) -> np.ndarray:
        """The object's mask, bool ``(rows, columns)``, after ``clicks`` (row, col, positive) on ``frame``."""
        logits, corner = self.logits(frame, clicks, previous, key=key)
        mask = (logits > self.logit).cpu().numpy()
        return mask if corner is None else paste_square(mask, corner, np.shape(frame))

    def clear(self) -> None:
        """Forget the cached frames (a new case)."""
        self._cache.clear()

    def for_case(self) -> SliceClicker:
        """A predictor with the same network and settings and a cache of its own: the cache is keyed
        by frame, so two cases open at once must not share one."""
        clicker = copy.copy(self)
        clicker._cache = OrderedDict()
        return clicker

"""STCN's space-time memory network (Cheng et al. 2021), shared by :mod:`nfbench.models.stcn` and ``nfbench train stcn``.

The architecture and parameter names follow the published code (``hkchengrex/STCN``,
``model/network.py``, ``model/modules.py``, ``model/eval_network.py``), so the published ``stcn.pth``
(a plain state dict of the training network, which the evaluation network loads as is: the two
differ only in the parameter-free memory reader) loads with ``strict=True``:

- ``key_encoder``: a ResNet-50 up to ``layer3`` (torchvision's layout, convolutions without bias;
  ``layer1`` is named ``res2``) → ``f4`` (256 channels, 1/4), ``f8`` (512, 1/8), ``f16`` (1024, 1/16);
- ``key_proj.key_proj``: 3 × 3 conv ``f16`` → the 64-channel key; ``key_comp``: 3 × 3 conv ``f16`` →
  512 channels, the query's own value half for the decoder;
- ``value_encoder``: a ResNet-18 up to ``layer3`` whose convolutions have biases (STCN's
  ``mod_resnet``) on the image plus mask channels, then ``fuser`` (two residual blocks on its 256
  channels concatenated with the key encoder's ``f16``) → the 512-channel value;
- ``decoder``: ``compress`` (residual block on readout ‖ ``key_comp``), ``up_16_8`` and ``up_8_4``
  (skip conv from ``f8`` / ``f4`` plus the bilinearly upsampled input, then a residual block),
  ``pred`` (3 × 3 conv to one logit), bilinear ×4 to the input size.

The memory read is STCN's L2 affinity ``(2·kₘ·k_q − |kₘ|²) / √C_k`` (the ``|k_q|²`` term is constant
over memory and cancels in the softmax), softmax over the memory positions, in evaluation over the
``top_k`` largest only (``inference_memory_bank.py``), in training over all (``network.py``).

Value-encoder input channels (``value_channels``): the published multi-object network takes the
image (3), the object's mask and the sum of the other objects' masks (5); STCN's single-object
(static-image pretraining) network takes 4. nfbench tracks one object, so the "others" channel is
always zero and a 4-channel checkpoint is exactly a 5-channel one whose fifth input filter is zero:
:func:`load_weights` zero-pads it, as the NF original did (seed_spec §3.4). A network built with
``value_channels=4`` loads 4-channel files strictly.

:class:`STCNConfig` holds the widths; ``original`` is the published network (54 M parameters),
``reduced`` a CPU-sized one with the same module names (≈ 0.9 M parameters, a 3.6 MB file).
Torch is imported when a network is built, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["STCNConfig", "CONFIGS", "build_network", "load_weights", "read_memory", "aggregate_logits"]


@dataclass(frozen=True)
class STCNConfig:
    """Widths of an STCN network; the defaults are the published one."""

    key_stem: int = 64
    key_planes: tuple[int, int, int] = (64, 128, 256)
    """Bottleneck widths of ``res2``, ``layer2``, ``layer3``; their outputs are 4 × wider (f4, f8, f16)."""
    key_blocks: tuple[int, int, int] = (3, 4, 6)
    value_stem: int = 64
    value_planes: tuple[int, int, int] = (64, 128, 256)
    value_blocks: tuple[int, int, int] = (2, 2, 2)
    key_dim: int = 64
    value_dim: int = 512
    comp_dim: int = 512
    decoder: tuple[int, int, int] = (512, 256, 256)
    """Outputs of ``compress``, ``up_16_8``, ``up_8_4``."""
    value_channels: int = 5
    """Image (3) + mask + other objects' mask (5, published multi-object) or image + mask (4, single-object)."""

    def __post_init__(self) -> None:
        numbers = [getattr(self, f.name) for f in fields(self)]
        flat = [n for v in numbers for n in (v if isinstance(v, tuple) else (v,))]
        if any(int(n) != n or n < 1 for n in flat) or self.value_channels not in (4, 5):
            raise ValueError(f"STCN widths must be whole numbers >= 1 and value_channels 4 or 5, got {self}")

    @property
    def f16(self) -> int:
        return 4 * self.key_planes[2]

    @classmethod
    def named(cls, name: str) -> STCNConfig:
        """One of :data:`CONFIGS` by name (``original``, ``reduced``)."""
        if name not in CONFIGS:
            raise ValueError(f"unknown STCN configuration {name!r}; choose one of {', '.join(CONFIGS)}")
        return CONFIGS[name]

    def describe(self) -> str:
        """The widths that differ from the original, for error messages (``original`` when none)."""
        changed = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                   if getattr(self, f.name) != getattr(ORIGINAL, f.name)]
        return "STCN (" + (", ".join(changed) or "original") + ")"


ORIGINAL = STCNConfig()
CONFIGS: Mapping[str, STCNConfig] = {
    "original": ORIGINAL,
    "reduced": STCNConfig(key_stem=16, key_planes=(8, 16, 32), key_blocks=(1, 1, 2), value_stem=16,
                          value_planes=(16, 32, 64), value_blocks=(1, 1, 1), key_dim=32, value_dim=64, comp_dim=64,
                          decoder=(64, 32, 32)),
}
"""Named configurations: the published network and a CPU-sized one (same module names, ≈ 60× fewer parameters)."""


@functools.cache
def _network_class() -> type:
    """The network's classes, defined on first use so that importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv3(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=bias)

    class ResBlock(nn.Module):
        """STCN's pre-activation residual block; a 3 × 3 ``downsample`` conv when the width changes."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.downsample = conv3(cin, cout) if cin != cout else None
            self.conv1 = conv3(cin, cout)
            self.conv2 = conv3(cout, cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            r = self.conv2(F.relu(self.conv1(F.relu(x))))
            return (x if self.downsample is None else self.downsample(x)) + r

    class Basic(nn.Module):
        """ResNet's basic block (two 3 × 3 convs), convolutions with bias as STCN's ``mod_resnet``."""

        expansion = 1

        def __init__(self, cin: int, planes: int, stride: int, bias: bool) -> None:
            super().__init__()
            self.conv1, self.bn1 = conv3(cin, planes, stride, bias), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3(planes, planes, 1, bias), nn.BatchNorm2d(planes)
            self.downsample = _shortcut(cin, planes, stride, bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Bottleneck(nn.Module):
        """ResNet's bottleneck block (1 × 1, strided 3 × 3, 1 × 1 × 4), torchvision's layout."""

        expansion = 4

        def __init__(self, cin: int, planes: int, stride: int, bias: bool) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=bias), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3(planes, planes, stride, bias), nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=bias), nn.BatchNorm2d(4 * planes)
            self.downsample = _shortcut(cin, 4 * planes, stride, bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
            out = self.bn3(self.conv3(out))
            return F.relu(out + (x if self.downsample is None else self.downsample(x)))

    def _shortcut(cin: int, cout: int, stride: int, bias: bool) -> nn.Module | None:
        if stride == 1 and cin == cout:
            return None
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias), nn.BatchNorm2d(cout))

    def stage(block: type, cin: int, planes: int, blocks: int, stride: int, bias: bool) -> nn.Sequential:
        layers = [block(cin, planes, stride, bias)]
        layers += [block(planes * block.expansion, planes, 1, bias) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    class KeyEncoder(nn.Module):
        """ResNet-50 (bottlenecks, no conv bias) to ``layer3``: ``f16, f8, f4``."""

        def __init__(self, c: STCNConfig) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, c.key_stem, 7, 2, 3, bias=False), nn.BatchNorm2d(c.key_stem)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            p, n = c.key_planes, c.key_blocks
            self.res2 = stage(Bottleneck, c.key_stem, p[0], n[0], 1, False)
            self.layer2 = stage(Bottleneck, 4 * p[0], p[1], n[1], 2, False)
            self.layer3 = stage(Bottleneck, 4 * p[1], p[2], n[2], 2, False)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            f4 = self.res2(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
            f8 = self.layer2(f4)
            return self.layer3(f8), f8, f4

    class FeatureFusion(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.block1, self.block2 = ResBlock(cin, cout), ResBlock(cout, cout)

        def forward(self, x: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
            return self.block2(self.block1(torch.cat([x, f16], 1)))

    class ValueEncoder(nn.Module):
        """ResNet-18 (conv bias, ``value_channels`` inputs) to ``layer3``, fused with the key's ``f16``."""

        def __init__(self, c: STCNConfig) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c.value_channels, c.value_stem, 7, 2, 3)
            self.bn1 = nn.BatchNorm2d(c.value_stem)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            p, n = c.value_planes, c.value_blocks
            self.layer1 = stage(Basic, c.value_stem, p[0], n[0], 1, True)
            self.layer2 = stage(Basic, p[0], p[1], n[1], 2, True)
            self.layer3 = stage(Basic, p[1], p[2], n[2], 2, True)
            self.fuser = FeatureFusion(p[2] + c.f16, c.value_dim)

        def forward(self, image: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(F.relu(self.bn1(self.conv1(torch.cat([image, masks], 1)))))
            return self.fuser(self.layer3(self.layer2(self.layer1(x))), f16)

    class KeyProjection(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.key_proj = conv3(cin, cout)
            nn.init.orthogonal_(self.key_proj.weight.data)  # as STCN: keys start well spread
            nn.init.zeros_(self.key_proj.bias.data)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.key_proj(x)

    class UpsampleBlock(nn.Module):
        def __init__(self, skip: int, up: int, out: int) -> None:
            super().__init__()
            self.skip_conv, self.out_conv = conv3(skip, up), ResBlock(up, out)

        def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
            up = F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=False)
            return self.out_conv(self.skip_conv(skip) + up)

    class Decoder(nn.Module):
        def __init__(self, c: STCNConfig) -> None:
            super().__init__()
            d = c.decoder
            self.compress = ResBlock(c.value_dim + c.comp_dim, d[0])
            self.up_16_8 = UpsampleBlock(4 * c.key_planes[1], d[0], d[1])
            self.up_8_4 = UpsampleBlock(4 * c.key_planes[0], d[1], d[2])
            self.pred = conv3(d[2], 1)

        def forward(self, x: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
            x = self.up_8_4(f4, self.up_16_8(f8, self.compress(x)))
            return F.interpolate(self.pred(F.relu(x)), scale_factor=4, mode="bilinear", align_corners=False)

    class STCN(nn.Module):
        """STCN for one object: ``encode_key``, ``encode_value``, ``segment`` (see the module docstring)."""

        def __init__(self, config: STCNConfig) -> None:
            super().__init__()
            self.config = config
            self.key_encoder = KeyEncoder(config)
            self.value_encoder = ValueEncoder(config)
            self.key_proj = KeyProjection(config.f16, config.key_dim)
            self.key_comp = conv3(config.f16, config.comp_dim)
            self.decoder = Decoder(config)

        def encode_key(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """``(B, 3, H, W)`` normalised frames → key, ``key_comp`` features, ``f16``, ``f8``, ``f4``."""
            if images.shape[-2] % 16 or images.shape[-1] % 16:
                raise ValueError(f"STCN frames must be multiples of 16 on each side, got {tuple(images.shape[-2:])}")
            f16, f8, f4 = self.key_encoder(images)
            return self.key_proj(f16), self.key_comp(f16), f16, f8, f4

        def encode_value(self, images: torch.Tensor, f16: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            """The memory value ``(B, value_dim, h, w)`` of frames with the object's probability ``(B, 1, H, W)``."""
            masks = mask if self.config.value_channels == 4 else torch.cat([mask, torch.zeros_like(mask)], 1)
            return self.value_encoder(images, f16, masks)

        def segment(self, key: torch.Tensor, comp: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor,
                    memory_keys: torch.Tensor, memory_values: torch.Tensor,
                    top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            """Background/object logits ``(B, 2, H, W)`` and object probability ``(B, 1, H, W)`` of a query frame.

            ``memory_keys`` ``(B, key_dim, N)``, ``memory_values`` ``(B, value_dim, N)`` over the
            ``N`` positions of the memory frames.
            """
            readout = read_memory(memory_keys, memory_values, key.flatten(2), top_k=top_k).view_as(comp)
            logits = aggregate_logits(self.decoder(torch.cat([readout, comp], 1), f8, f4))
            return logits, torch.softmax(logits, 1)[:, 1:]

    return STCN


def read_memory(memory_keys: torch.Tensor, memory_values: torch.Tensor, query: torch.Tensor, *,
                top_k: int | None = None) -> torch.Tensor:
    """STCN's memory readout ``(B, value_dim, HW)`` for query keys ``(B, key_dim, HW)``.

    L2 affinity ``(2·kₘᵀk_q − |kₘ|²) / √C_k`` softmaxed over the memory positions; with ``top_k``
    only the ``top_k`` largest per query position are kept (the others weigh 0).
    """
    import torch

    scale = math.sqrt(memory_keys.shape[1])
    affinity = (2 * memory_keys.transpose(1, 2) @ query - memory_keys.pow(2).sum(1).unsqueeze(2)) / scale
    if top_k is not None and top_k < affinity.shape[1]:
        values, indices = torch.topk(affinity, top_k, dim=1)
        affinity = torch.zeros_like(affinity).scatter_(1, indices, torch.softmax(values, 1))
    else:
        affinity = torch.softmax(affinity, 1)
    return memory_values @ affinity


def aggregate_logits(logit: torch.Tensor) -> torch.Tensor:
    """STM's soft aggregation for one object: background/object logits ``(B, 2, H, W)`` of the decoder's ``(B, 1, H, W)``.

    STCN turns the object's probability ``p = σ(z)`` into the logits ``log(q / (1 − q))`` of
    ``q = (1 − p, p)`` clamped to ``[1e-7, 1 − 1e-7]``: that is ``(−z, z)``, here without the clamp,
    which changes no probability by more than 1e-13 but stops the gradient wherever ``|z| > 16``
    (a network trained from scratch at a high learning rate died of it: every pixel saturated).
    """
    import torch

    return torch.cat([-logit, logit], 1)


def build_network(config: STCNConfig | str = ORIGINAL) -> torch.nn.Module:
    """An STCN network (random weights) of a configuration or its name (see :data:`CONFIGS`)."""
    return _network_class()(STCNConfig.named(config) if isinstance(config, str) else config)


def load_weights(network: torch.nn.Module, path: str | Path, *, model_name: str = "stcn") -> None:
    """Load a checkpoint strictly: the published ``stcn.pth`` (plain state dict), ours, or our ``last.pt`` (``net``).

    A single-object file (4-channel ``value_encoder.conv1``) goes into a 5-channel network with its
    "other objects" filter zero (exactly the same network for one object, as the NF original).
    """
    import torch

    from nfbench.models.base import ModelError
    from nfbench.models.blocks.checkpoints import load_checkpoint, read_state_dict, state_dict_problems

    expected = network.state_dict()
    name = "value_encoder.conv1.weight"
    try:
        state = read_state_dict(path, model_name=model_name)
    except ModelError:  # not a plain state dict: load_checkpoint tries ``net`` and words the error
        state = None
    if state is not None and name in state and state[name].shape[1] + 1 == expected[name].shape[1] == 5:
        padded = torch.cat([state[name], torch.zeros_like(state[name][:, :1])], 1)
        state = {**state, name: padded}
        problems = state_dict_problems(state, expected)
        if not problems:
            network.load_state_dict(state, strict=True)
            return
    load_checkpoint(network, path, model_name=model_name, or_key="net",
                    network=network.config.describe())  # type: ignore[union-attr]

"""SimpleClick's network (isegm ``PlainVitModel``) in PyTorch, with the original's parameter names.

Written from the facts of ``uncbiag/SimpleClick@f33112e`` (``isegm/model/is_plainvit_model.py``,
``modeling/models_vit.py``, ``modeling/swin_transformer.py::SwinTransfomerSegHead``), so a published
checkpoint's ``state_dict`` loads with ``strict=True``:

- ``patch_embed_coords.proj``: a ``patch × patch`` convolution of the three click channels
  (previous mask, positive disks, negative disks, in that order), added to the image patches;
- ``backbone``: a plain ViT (``patch_embed.proj``, ``cls_token``, ``pos_embed`` of ``grid² + 1``
  tokens, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, and the unused
  ``fc_norm`` and 1000-class ``head`` that the checkpoints carry). The class token is not run; the
  blocks attend within windows of ``224 // patch`` patches (the grid split evenly), except every
  ``depth // 4``-th block (every 6th of 12), which attends globally, as the original;
- ``neck``: the simple feature pyramid (``down_4``, ``down_8``, ``down_16``, ``down_32``: transposed
  convolutions up, a strided convolution down, GroupNorm(1) and GELU);
- ``head``: per level a 1 × 1 convolution with ReLU (``convs.N.conv``), resized to the finest level,
  fused (``fusion_conv.conv``, ReLU), dropout 0.1 and ``conv_seg``; ``up_conv1``/``up_conv2`` exist
  in every checkpoint but run only for the ``x2``/``x4`` heads, never for SimpleClick's ``x1``.

The image arrives normalised (the predictor caches it); :meth:`SimpleClickNet.embed_image` is the
part that depends on the image alone, :meth:`SimpleClickNet.decode` the part run per click.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nfbench.models.simpleclick import SimpleClickConfig

__all__ = ["SimpleClickNet"]

_WINDOW_PIXELS = 224  # the MAE pre-training size: the blocks attend within windows of this many pixels


class _PatchEmbed(nn.Module):
    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, C)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _VisionTransformer(nn.Module):
    """The ViT of ``models_vit.py``; ``fc_norm`` and ``head`` are kept only so checkpoints load strictly."""

    def __init__(self, config: SimpleClickConfig, classes: int = 1000) -> None:
        super().__init__()
        dim, self.grid = config.embed_dim, config.grid
        self.patch_embed = _PatchEmbed(3, dim, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[_Block(dim, config.heads, config.mlp_ratio) for _ in range(config.depth)])
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        self.windows = max(1, self.grid // max(1, _WINDOW_PIXELS // config.patch_size))
        self.global_every = 6 if config.depth == 12 else config.depth // 4

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (B·w², N/w², C): the grid cut into w × w windows."""
        b, _, c = x.shape
        w, g = self.windows, self.grid
        x = x.view(b, w, g // w, w, g // w, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b * w * w, (g // w) ** 2, c)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        w, g = self.windows, self.grid
        c = x.shape[-1]
        x = x.view(-1, w, w, g // w, g // w, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, g * g, c)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The blocks over patch tokens that already hold the image, the clicks and the position."""
        x, split = tokens, False
        for i, block in enumerate(self.blocks, start=1):
            windowed = i % self.global_every != 0
            if windowed and not split:
                x, split = self._split(x), True
            elif not windowed and split:
                x, split = self._merge(x), False
            x = block(x)
        return self._merge(x) if split else x


class _ConvReLU(nn.Module):
    """mmcv's ``ConvModule`` without a norm: a biased 1 × 1 convolution (``.conv``) and ReLU."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def _up(channels: int, out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(channels, out, 2, stride=2), nn.GroupNorm(1, out)]


class _SimpleFPN(nn.Module):
    def __init__(self, dim: int, out: tuple[int, int, int, int]) -> None:
        super().__init__()
        c4, c8, c32 = max(out[0] * 2, dim // 2), max(out[1], dim // 2), max(out[3], dim * 2)
        self.down_4 = nn.Sequential(*_up(dim, c4), nn.GELU(), *_up(c4, c4 // 2), nn.Conv2d(c4 // 2, out[0], 1),
                                    nn.GroupNorm(1, out[0]), nn.GELU())
        self.down_8 = nn.Sequential(*_up(dim, c8), nn.Conv2d(c8, out[1], 1), nn.GroupNorm(1, out[1]), nn.GELU())
        self.down_16 = nn.Sequential(nn.Conv2d(dim, out[2], 1), nn.GroupNorm(1, out[2]), nn.GELU())
        self.down_32 = nn.Sequential(nn.Conv2d(dim, c32, 2, stride=2), nn.GroupNorm(1, c32), nn.Conv2d(c32, out[3], 1),
                                     nn.GroupNorm(1, out[3]), nn.GELU())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.down_4(x), self.down_8(x), self.down_16(x), self.down_32(x)]


def _up_conv(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(*_up(channels, out), nn.Conv2d(out, out, 1), nn.GroupNorm(1, out), nn.GELU())


class _SegHead(nn.Module):
    def __init__(self, levels: tuple[int, int, int, int], channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_ConvReLU(c, channels) for c in levels)
        self.fusion_conv = _ConvReLU(channels * len(levels), channels)
        self.up_conv1 = _up_conv(channels, channels // 2)
        self.up_conv2 = _up_conv(channels // 2, channels // 4)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, 1, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        size = levels[0].shape[2:]
        outs = [F.interpolate(conv(x), size=size, mode="bilinear", align_corners=False)
                for conv, x in zip(self.convs, levels)]
        return self.conv_seg(self.dropout(self.fusion_conv(torch.cat(outs, dim=1))))


class SimpleClickNet(nn.Module):
    """``PlainVitModel(use_disks=True, norm_radius=5, with_prev_mask=True)`` at ``config``'s sizes."""

    def __init__(self, config: SimpleClickConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed_coords = _PatchEmbed(3, config.embed_dim, config.patch_size)
        self.backbone = _VisionTransformer(config)
        self.neck = _SimpleFPN(config.embed_dim, config.neck)
        self.head = _SegHead(config.neck, config.head_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's initialisation of the ViT: Xavier-uniform linears and patch kernels, N(0, 0.02) tokens."""
        for module in self.backbone.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.backbone.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.backbone.cls_token, std=0.02)
        nn.init.normal_(self.backbone.pos_embed, std=0.02)

    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(B, N, C)`` of a normalised image ``(B, 3, S, S)``: what clicks do not change."""
        return self.backbone.patch_embed(image)

    def decode(self, image_tokens: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, S, S)`` from the image tokens and the click maps ``(B, 3, S, S)`` (prev, pos, neg)."""
        x = image_tokens + self.patch_embed_coords(maps)
        x = self.backbone.encode(x + self.backbone.pos_embed[:, 1:])
        b, _, c = x.shape
        grid = self.backbone.grid
        features = x.transpose(1, 2).reshape(b, c, grid, grid)
        logits = self.head(self.neck(features))
        return F.interpolate(logits, size=maps.shape[2:], mode="bilinear", align_corners=True)

    def forward(self, image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return self.decode(self.embed_image(image), maps)

"""STCN mask propagation through a case's frames: from the annotated (clicked) frames to the rest of the stack.

The network is :mod:`nfbench.models.blocks.stcn_network` (the published STCN, or a reduced width).
A :class:`Propagator` is made once per case with the whole frame stack
(:meth:`~nfbench.models.blocks.frames.FrameStack.frames`, the layout of ``nfbench data slice``) and
called after every click with the masks of the annotated frames; it returns the masks of every
frame it reached.

Propagation as STCN evaluates (``inference_core.py``: ``top_k`` 20, and as the NF original's
``mem_every=1, include_last=True``, seed_spec §3.4), with the annotated frames as the memory: each
frame is segmented from the nearest annotated frame (forwards after it, backwards before it; a
frame halfway between two annotated frames goes to the earlier one), reading the memory of all
annotated frames and of the frames already propagated in that pass (every ``mem_every``-th
permanently, the last one always). A pass stops at the first frame whose mask is empty
(``stop_empty``: the object has ended; that frame is returned empty) and at ``limit``.

Frames are the 8-bit windowed frames repeated to RGB and normalised with the ImageNet statistics,
as STCN; scaled so that the longer side is at most ``max_side`` when given (bilinear, antialiased)
and zero-padded (centred) to a multiple of 16, as STCN's ``pad_divide_by``; the object probability
comes back to the frame size bilinearly and is thresholded at ``threshold``.

Speed: the key encoder's output (key, ``key_comp`` features, skip features) of a frame is computed
once per Propagator, when first needed, and reused by every later call (``cache=False`` recomputes
it, for tests and benchmarks); so is the value of an annotated frame whose mask did not change.
Memory: the cache holds ``f4 / 16 + f8 / 64 + (f16 + key_dim + comp_dim) / 256`` floats per network
pixel, 19 MB per 736 × 208 frame (a small phantom's) with the original widths, 2.4 MB with the reduced
ones; a full-size phantom's 2900 × 800 frames take 15 times more, hence ``max_side``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nfbench.models.blocks.frames import IMAGENET_MEAN, IMAGENET_STD
from nfbench.models.blocks.stcn_network import CONFIGS, STCNConfig, build_network, load_weights

if TYPE_CHECKING:
    import torch

__all__ = ["CONFIGS", "STCNConfig", "FrameGeometry", "Propagator", "build_network", "load_weights", "passes"]

_DIVISOR = 16


@dataclass(frozen=True)
class FrameGeometry:
    """Frames of one size inside the network: scaled to ``size``, zero-padded (centred) to ``padded``, multiples of 16."""

    size: tuple[int, int]
    pad: tuple[int, int]
    """Rows and columns of padding before the frame (top, left)."""
    padded: tuple[int, int]

    @classmethod
    def of(cls, shape: Sequence[int], max_side: int | None = None) -> FrameGeometry:
        """Frames of ``shape`` (rows, cols), scaled down to at most ``max_side`` on the longer side when given."""
        rows, cols = (int(n) for n in shape)
        scale = 1.0 if max_side is None else min(1.0, max_side / max(rows, cols))
        size = (max(1, round(rows * scale)), max(1, round(cols * scale)))
        padded = tuple(-(-n // _DIVISOR) * _DIVISOR for n in size)
        return cls(size, ((padded[0] - size[0]) // 2, (padded[1] - size[1]) // 2), padded)  # type: ignore[arg-type]

    def to_network(self, planes: np.ndarray, device: torch.device | str, *, image: bool) -> torch.Tensor:
        """uint8 frames (``image``: normalised RGB) or masks ``(T, rows, cols)`` as ``(T, C, H, W)`` network input."""
        import torch
        from torch.nn import functional as F

        x = torch.from_numpy(np.ascontiguousarray(planes, np.float32))[:, None].to(device)
        if image:
            x = x / 255.0
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if image:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x.expand(-1, 3, -1, -1) - mean) / std
        (top, left), (height, width) = self.pad, self.padded
        return F.pad(x, (left, width - self.size[1] - left, top, height - self.size[0] - top))

    def to_frame(self, maps: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Network maps ``(T, C, H, W)`` without the padding, at frame ``shape`` (bilinear): ``(T, C, rows, cols)``."""
        from torch.nn import functional as F

        (top, left), (rows, cols) = self.pad, self.size
        maps = maps[..., top:top + rows, left:left + cols]
        if (rows, cols) != tuple(shape):
            maps = F.interpolate(maps, size=tuple(shape), mode="bilinear", align_corners=False)
        return maps


def passes(annotated: list[int], first: int, last: int) -> list[tuple[int, list[int]]]:
    """``(source, frames in order)`` of every propagation pass: each frame of ``first..last`` from its nearest annotated frame.

    ``annotated`` sorted; frames between two annotated ones are split at the middle (ties to the earlier).
    """
    out: list[tuple[int, list[int]]] = []
    for i, a in enumerate(annotated):
        before = annotated[i - 1] if i else None
        after = annotated[i + 1] if i + 1 < len(annotated) else None
        low = first if before is None else (before + a) // 2 + 1
        high = last if after is None else (a + after) // 2
        backward = [t for t in range(a - 1, max(low, first) - 1, -1) if t <= last]
        forward = [t for t in range(a + 1, min(high, last) + 1) if t >= first]
        out += [(a, frames) for frames in (backward, forward) if frames]
    return out


class Propagator:
    """STCN propagation over one case's frames; the key features are cached across calls (see the module doc).

    Parameters
    ----------
    network
        An STCN network (:func:`build_network`, weights loaded with :func:`load_weights`); put in
        evaluation mode on ``device``.
    frames
        uint8 ``(n_frames, rows, cols)``, the case's whole stack.
    top_k
        Memory positions each query position reads (STCN's evaluation: 20).
    mem_every
        Every ``mem_every``-th propagated frame of a pass joins the memory for good; the last one always.
    threshold
        On the object probability.
    max_side
        Frames are scaled down so that their longer side is at most this (``None``: native size).
    cache
        Keep each frame's key features for later calls (``False``: recompute them every time).
    threads
        PyTorch's intra-op threads, set for the process (0: leave as is).
    """

    def __init__(self, network: torch.nn.Module, frames: np.ndarray, *, device: str = "cpu", top_k: int = 20,
                 mem_every: int = 1, threshold: float = 0.5, max_side: int | None = None, cache: bool = True,
                 threads: int = 0) -> None:
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
            raise ValueError(f"STCN propagates through uint8 frames (n_frames, rows, cols), got {frames.dtype} "
                             f"{frames.shape}")
        if top_k < 1 or mem_every < 1 or not 0 < threshold < 1 or (max_side is not None and max_side < _DIVISOR):
            raise ValueError(f"STCN options need top_k >= 1, mem_every >= 1, 0 < threshold < 1 and max_side >= 16, "
                             f"got {top_k}, {mem_every}, {threshold}, {max_side}")
        if threads < 0:
            raise ValueError(f"STCN option threads must be 0 (leave as is) or more, got {threads}")
        if threads:
            torch.set_num_threads(int(threads))
        self.network = network.to(device).eval()
        self.frames, self.device = frames, torch.device(device)
        self.top_k, self.mem_every, self.threshold, self.cache = int(top_k), int(mem_every), float(threshold), cache
        self.geometry = FrameGeometry.of(frames.shape[1:], max_side)
        self.keys_encoded = 0
        """Key-encoder runs so far (once per frame when cached)."""
        self._keys: dict[int, tuple[torch.Tensor, ...]] = {}
        self._values: dict[int, tuple[bytes, torch.Tensor]] = {}

    def _image(self, t: int) -> torch.Tensor:
        """Frame ``t`` as network input (cheap: recomputed rather than cached)."""
        return self.geometry.to_network(self.frames[t:t + 1], self.device, image=True)

    def _key(self, t: int) -> tuple[torch.Tensor, ...]:
        """Frame ``t``'s key-encoder output (key, key_comp, f16, f8, f4), cached."""
        if t in self._keys:
            return self._keys[t]
        self.keys_encoded += 1
        features = tuple(self.network.encode_key(self._image(t)))  # type: ignore[operator]
        if self.cache:
            self._keys[t] = features
        return features

    def _annotated_value(self, t: int, mask: np.ndarray) -> torch.Tensor:
        """The memory value of an annotated frame, reused while its mask stays the same."""
        digest = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
        if t in self._values and self._values[t][0] == digest:
            return self._values[t][1]
        prob = self.geometry.to_network(mask[None], self.device, image=False)
        value = self.network.encode_value(self._image(t), self._key(t)[2], prob)  # type: ignore[operator]
        if self.cache:
            self._values[t] = (digest, value)
        return value

    # -- propagation -----------------------------------------------------------------------------
    def propagate(self, annotated: Mapping[int, np.ndarray], *, stop_empty: bool = True,
                  limit: tuple[int, int] | None = None) -> dict[int, np.ndarray]:
        """Masks of the frames reached from the annotated ones (annotated frames included as given)."""
        import torch

        n, rows, cols = self.frames.shape
        first, last = (0, n - 1) if limit is None else (max(0, int(limit[0])), min(n - 1, int(limit[1])))
        masks: dict[int, np.ndarray] = {}
        for t, mask in annotated.items():
            mask = np.asarray(mask)
            if not 0 <= int(t) < n or mask.shape != (rows, cols):
                raise ValueError(f"annotated frame {t}: a mask of shape {mask.shape} on frame {t}, expected frames "
                                 f"0..{n - 1} of shape {(rows, cols)}")
            masks[int(t)] = mask.astype(bool, copy=True)
        out = dict(masks)
        if not masks:
            return out
        with torch.inference_mode():
            memory = [(self._key(t)[0].flatten(2), self._annotated_value(t, m).flatten(2)) for t, m in masks.items()]
            for source, frames in passes(sorted(masks), first, last):
                if stop_empty and not masks[source].any():
                    continue
                out.update(self._pass(frames, memory, stop_empty))
        return out

    def _pass(self, frames: list[int], annotated_memory: list, stop_empty: bool) -> dict[int, np.ndarray]:
        import torch

        kept: list = []
        temporary: list = []
        out: dict[int, np.ndarray] = {}
        for step, t in enumerate(frames, start=1):
            key, comp, f16, f8, f4 = self._key(t)
            bank = annotated_memory + kept + temporary
            keys = torch.cat([k for k, _ in bank], 2)
            values = torch.cat([v for _, v in bank], 2)
            _, prob = self.network.segment(key, comp, f8, f4, keys, values, top_k=self.top_k)  # type: ignore[operator]
            out[t] = (self.geometry.to_frame(prob, self.frames.shape[1:])[0, 0] > self.threshold).cpu().numpy()
            if stop_empty and not out[t].any():
                break
            if step < len(frames):
                entry = (key.flatten(2), self.network.encode_value(self._image(t), f16, prob).flatten(2))  # type: ignore[operator]
                if step % self.mem_every == 0:
                    kept.append(entry)
                    temporary = []
                else:
                    temporary = [entry]
        return out

"""`dins`: the 3D Deep Interactive Networks (Zhang et al., IEEE JBHI 2022) in PyTorch, for inference.

The network (seed_spec §3.2; the original TF 2.8 ``models/DINs.py``), on channels-last tensors
of the original ONNX signature: ``image`` (B, A, S, R, 1) and ``guide`` (B, A, S, R, 2) → logits
(B, A, S, R, 2), (A, S, R) = (depth, height, width) = (10, 512, 160) in the original window.

- The encoder sees ``concat(image, guide)`` (3 channels). Blocks ``down1``–``down4`` have
  ``min(base · 2^k, max)`` channels (30/60/120/240 at full width), kernels 1×3×3, 1×3×3, 3×3×3,
  3×3×3 (A, S, R) and strides 1, then (1, 2, 2); the ``bridge`` (320) has kernel 3×3×3, stride 2.
- Each block is conv → InstanceNorm → ReLU → conv (stride 1) → InstanceNorm → ReLU, convolutions
  without bias. The guide enters the bridge: ``MaxPool3d((1, 8, 8))`` then a 3×3×3 stride-2
  convolution with bias to 320 channels (``dim.1``), added after the bridge's first norm, before
  its ReLU.
- Decoder blocks ``up4``–``up1`` (240/120/60/30; kernels 3×3×3, 3×3×3, 1×3×3, 1×3×3): a
  transposed convolution (kernel = stride: 2×2×2 for ``up4``, else 1×2×2; no bias) of the deeper
  features, concatenated after the skip (``[skip, up]``), then the block. ``final``: 1×1×1 with
  bias to 2 classes.
- As in TF/Keras: "same" padding of a strided convolution pads the end more (``(0, 1)`` for a
  3-kernel stride 2 on an even size), and InstanceNorm (tensorflow-addons) is affine with
  ε = 1e-3. A window needs A even and S, R multiples of 16.

Parameter names (for a later mapping from the ONNX/TF initializers ``model/<block>/<layer>/…``):
``<block>.conv1.weight``, ``<block>.conv2.weight`` (TF ``kernel`` (kd, kh, kw, in, out) →
torch (out, in, kd, kh, kw)), ``<block>.norm1.weight`` / ``.bias`` (TF ``gamma`` / ``beta``),
``<block>.up.weight`` (TF Conv3DTranspose ``kernel`` (kd, kh, kw, out, in) → torch
(in, out, kd, kh, kw)), ``dim.1.weight`` / ``dim.1.bias`` and ``final.weight`` / ``final.bias``;
``<block>`` is one of ``down1``–``down4``, ``bridge``, ``up4``–``up1``.

Preprocessing as the original evaluation: the canonical volume to ``SRA`` at 1.7 × 1.7 × 7.8 mm
(linear), z-score over the non-zero voxels (zeros stay 0; population std), done once per case
(the session's cache); sliding window ROI (512, 160, 10) in (S, R, A), overlap 0.25, Gaussian
blending (σ = 0.125 · ROI), zero padding; argmax of the blended logits (= softmax + argmax);
nearest neighbour back to the native grid.

Guide: per click ``exp(-Σ Δ²/2σ²)``, σ = (5, 5, 1) voxels in (S, R, A) of the model grid, clicks
of one sign combined by max (the original training formula, seed_spec §5.1; the evaluation's
sum-then-min-max-normalised erf Gaussian equals it for well-separated clicks, and differs along A
at σ = 1 by the erf kernel's discretisation: 0.61 / 0.14 here against 0.63 / 0.16 at 1 / 2
slices). Channel 0: positive (lesion) clicks, channel 1: negative (background). Each click is
encoded in a box of 4σ around it (values outside < 3.4e-4 are 0: a change far below what the
network resolves, and a box 2.2× smaller than at 6σ, so fewer windows per click), so no
whole-volume distance transform. The spec leaves open (chosen here): the guide's combination of clicks (max), the
window positions (:mod:`~nfbench.models.blocks.sliding_window`'s evenly spread starts) and the
resampling convention (:mod:`~nfbench.models.blocks.grids`'s aligned extents, not MONAI's
``Spacingd`` origin-kept grid).

Incremental sliding window (:class:`~nfbench.models.blocks.sliding_window.WindowCache`): ``start``
runs every window once without clicks (the no-click answers, which ``reset`` returns to running
nothing); a click changes the guide only in its 4σ box, so only the windows meeting that box are
run again, and the blend equals a full pass. ``session.windows_run`` counts the windows run.
The windows to run go through the network ``sw_batch_size`` at a time (one call of batch B),
and the answer comes back to the native grid only over the re-blended windows
(:class:`~nfbench.models.blocks.native_answer.NativeAnswer`), exactly as a whole-grid remap.

Options beyond the original: ``keep_clicked`` answers only the connected components of the mask
that hold a positive click (see :mod:`~nfbench.models.blocks.native_answer`: in lesion scenarios
a model otherwise segments every lesion-like structure of the scan); ``honour_clicks`` puts
every positive click's model voxel in the answer (see the same module); ``threads`` sets PyTorch's
intra-op threads when the model is built (0 keeps PyTorch's default, the number of physical
cores: both cores of a 2-core machine).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nfbench.bbox import mask_bbox
from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, Prediction
from nfbench.models.blocks.checkpoints import load_checkpoint
from nfbench.models.blocks.encodings import gaussian
from nfbench.models.blocks.grids import GridMap, box_around
from nfbench.models.blocks.intensity import zscore_nonzero
from nfbench.models.blocks.native_answer import NativeAnswer
from nfbench.models.blocks.sliding_window import WindowCache
from nfbench.models.registry import missing_file, missing_modules
from nfbench.types import Box, BoxSlices, Click

if TYPE_CHECKING:
    import torch

__all__ = ["GUIDE_SIGMA", "ORIENTATION", "ROI", "SPACING", "DINsModel", "add_guide", "build_network", "guide_channels",
           "parse_roi", "parse_triple"]

ORIENTATION = "SRA"
#: Model grid spacing (mm) along (S, R, A).
SPACING = (1.7, 1.7, 7.8)
#: Sliding-window ROI in (S, R, A) voxels: the ONNX signature's (512, 160) in-plane and 10 slices.
ROI = (512, 160, 10)
#: Guide σ in model voxels along (S, R, A).
GUIDE_SIGMA = (5.0, 5.0, 1.0)
_GUIDE_CUTOFF = 4.0  # σ units: exp(-8) < 3.4e-4
_STRIDE = (2, 16, 16)  # the network's total down-sampling along (A, S, R)


@functools.cache
def _network_class() -> type:
    """The network's classes, defined on first use so that importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SameConv3d(nn.Conv3d):
        """A convolution with TF/Keras "same" padding (the end padded more when the total is odd)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads: list[int] = []
            for n, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads += [total // 2, total - total // 2]
            return self._conv_forward(F.pad(x, pads), self.weight, self.bias)

    class Block(nn.Module):
        """conv → norm (+ guide) → ReLU → conv → norm → ReLU, after an optional up-sampling and skip."""

        def __init__(self, cin: int, cout: int, kernel: tuple, stride: tuple = (1, 1, 1),
                     up_from: int | None = None, up_stride: tuple | None = None) -> None:
            super().__init__()
            if up_from is not None:
                self.up = nn.ConvTranspose3d(up_from, cout, up_stride, up_stride, bias=False)
            self.conv1 = SameConv3d(cin, cout, kernel, stride, padding=0, bias=False)
            self.norm1 = nn.InstanceNorm3d(cout, eps=1e-3, affine=True)
            self.conv2 = SameConv3d(cout, cout, kernel, 1, padding=0, bias=False)
            self.norm2 = nn.InstanceNorm3d(cout, eps=1e-3, affine=True)

        def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                    guide: torch.Tensor | None = None) -> torch.Tensor:
            if skip is not None:
                x = torch.cat([skip, self.up(x)], dim=1)
            y = self.norm1(self.conv1(x))
            y = torch.relu(y if guide is None else y + guide)
            return torch.relu(self.norm2(self.conv2(y)))

    class DINsNet(nn.Module):
        """DINs on channels-last (B, A, S, R, C) tensors: ``forward(image, guide)`` → logits (B, A, S, R, classes)."""

        def __init__(self, base_filters: int = 30, max_filters: int = 320, n_classes: int = 2) -> None:
            super().__init__()
            c = [min(base_filters * 2**k, max_filters) for k in range(5)]
            k1, k3 = (1, 3, 3), (3, 3, 3)
            half, both = (1, 2, 2), (2, 2, 2)
            self.down1 = Block(3, c[0], k1)
            self.down2 = Block(c[0], c[1], k1, half)
            self.down3 = Block(c[1], c[2], k3, half)
            self.down4 = Block(c[2], c[3], k3, half)
            self.bridge = Block(c[3], c[4], k3, both)
            self.up4 = Block(2 * c[3], c[3], k3, up_from=c[4], up_stride=both)
            self.up3 = Block(2 * c[2], c[2], k3, up_from=c[3], up_stride=half)
            self.up2 = Block(2 * c[1], c[1], k1, up_from=c[2], up_stride=half)
            self.up1 = Block(2 * c[0], c[0], k1, up_from=c[1], up_stride=half)
            self.dim = nn.Sequential(nn.MaxPool3d((1, 8, 8)), SameConv3d(2, c[4], 3, 2, padding=0, bias=True))
            self.final = nn.Conv3d(c[0], n_classes, 1, bias=True)

        def forward(self, image: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
            if image.ndim != 5 or guide.ndim != 5 or image.shape[-1] != 1 or guide.shape[-1] != 2 \
                    or image.shape[:4] != guide.shape[:4]:
                raise ValueError(f"DINs takes image (B, A, S, R, 1) and guide (B, A, S, R, 2), "
                                 f"got {tuple(image.shape)} and {tuple(guide.shape)}")
            if any(n % s for n, s in zip(image.shape[1:4], _STRIDE)):
                raise ValueError(f"DINs needs A even and S, R multiples of 16, "
                                 f"got (A, S, R) = {tuple(image.shape[1:4])}")
            g = guide.permute(0, 4, 1, 2, 3)
            x1 = self.down1(torch.cat([image.permute(0, 4, 1, 2, 3), g], dim=1))
            x2 = self.down2(x1)
            x3 = self.down3(x2)
            x4 = self.down4(x3)
            x = self.bridge(x4, guide=self.dim(g))
            x = self.up4(x, x4)
            x = self.up3(x, x3)
            x = self.up2(x, x2)
            x = self.up1(x, x1)
            return self.final(x).permute(0, 2, 3, 4, 1)

    return DINsNet


def build_network(base_filters: int = 30, max_filters: int = 320, n_classes: int = 2) -> torch.nn.Module:
    """The DINs network (random weights); full width is ``base_filters=30, max_filters=320`` as the original."""
    if base_filters < 1 or max_filters < base_filters:
        raise ValueError(f"dins options need 1 <= base_filters <= max_filters, got {base_filters} and {max_filters}")
    return _network_class()(base_filters, max_filters, n_classes)


def parse_triple(value: Sequence[float] | str, option: str) -> tuple[float, float, float]:
    """Three numbers along (S, R, A), from a sequence or a string ``"S,R,A"`` (a CLI option)."""
    try:
        triple = tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or any(not v > 0 for v in triple):
        raise ValueError(f"dins option {option} must be three positive numbers S,R,A, got {value!r}")
    return triple  # type: ignore[return-value]


def parse_roi(value: Sequence[int] | str) -> tuple[int, int, int]:
    """The window size in (S, R, A): S and R multiples of 16, A even (the network's down-sampling)."""
    roi = parse_triple(value, "roi")
    if any(n != int(n) or int(n) % s for n, s in zip(roi, (16, 16, 2))):
        raise ValueError(f"dins option roi must be sizes S,R,A with S and R multiples of 16 and A even, got {value!r}")
    return tuple(int(n) for n in roi)  # type: ignore[return-value]


def _check_options(model: str, weights: str | Path | None, overlap: float, sw_batch_size: int, threads: int) -> None:
    """What every DINs flavour refuses before loading anything: absent weights, a bad overlap, batch or threads."""
    problems = missing_file(weights)
    if problems:
        raise ModelError(f"model {model!r}: {problems[0]}")
    if not 0 <= overlap < 1:
        raise ValueError(f"{model} option overlap must be in [0, 1), got {overlap}")
    if sw_batch_size < 1:
        raise ValueError(f"{model} option sw_batch_size must be at least 1, got {sw_batch_size}")
    if threads < 0:
        raise ValueError(f"{model} option threads must be 0 (the default of the runtime) or more, got {threads}")


def guide_channels(shape: Sequence[int], clicks: Sequence[tuple[tuple[int, int, int], bool]],
                   sigma: Sequence[float] = GUIDE_SIGMA) -> np.ndarray:
    """The (2, S, R, A) guide of model-grid clicks ``(index, positive)``: per sign, the max of each click's Gaussian."""
    out = np.zeros((2, *shape), np.float32)
    for index, positive in clicks:
        add_guide(out, index, positive, sigma)
    return out


def add_guide(out: np.ndarray, index: Sequence[int], positive: bool, sigma: Sequence[float] = GUIDE_SIGMA) -> BoxSlices:
    """One click's Gaussian (σ in model voxels along S, R, A) maxed into the guide ``out`` (2, S, R, A),
    inside its 4σ box, which is returned."""
    unit = [1.0 / s for s in sigma]  # distances in σ
    box = box_around(index, _GUIDE_CUTOFF, unit, out.shape[1:])
    local = [tuple(v - s.start for v, s in zip(index, box))]
    crop = out[(0 if positive else 1, *box)]
    np.maximum(crop, gaussian(crop.shape, local, 1.0, unit), out=crop)
    return box


class DINsModel:
    """DINs (3D, PyTorch) with Gaussian click guides; weights required (a plain state dict file).

    Options: ``base_filters`` / ``max_filters`` (network width; 30 / 320 is the original, smaller
    for the CPU), ``roi`` (window, S,R,A voxels), ``overlap``, ``spacing`` (model grid, mm along
    S,R,A; the original 1.7,1.7,7.8, coarser for a fast CPU run; σ stays in model voxels),
    ``guide_sigma`` (the guide's σ in model voxels along S,R,A, the original 5,5,1; only for weights
    trained with another), ``device``,
    ``sw_batch_size`` (windows per network call), ``keep_clicked`` (answer only the 26-connected
    components of the model-grid mask holding a positive click of the session, nothing before
    one: in lesion scenarios the model otherwise segments every lesion-like structure of the scan;
    a feasibility run: Dice after one click 0.73 instead of 0.99), ``honour_clicks`` (a positive
    click's voxel is lesion in the answer, whatever the network says there), ``threads`` (PyTorch's intra-op
    threads, set for the whole process when the model is built; 0 keeps PyTorch's default, the
    number of physical cores: both cores of a 2-core machine).
    """

    name = "dins"
    capabilities = frozenset({"click"})
    needs_weights = True
    description = "DINs 3D CNN (PyTorch), Gaussian click guides, sliding window (needs weights)"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        base_filters: int = 30,
        max_filters: int = 320,
        roi: Sequence[int] | str = ROI,
        overlap: float = 0.25,
        spacing: Sequence[float] | str = SPACING,
        sw_batch_size: int = 4,
        keep_clicked: bool = False,
        threads: int = 0,
        guide_sigma: Sequence[float] | str = GUIDE_SIGMA,
        honour_clicks: bool = False,
    ) -> None:
        _check_options(self.name, weights, overlap, sw_batch_size, threads)
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.roi, self.overlap, self.device = parse_roi(roi), float(overlap), torch.device(device)
        self.spacing, self.guide_sigma = parse_triple(spacing, "spacing"), parse_triple(guide_sigma, "guide_sigma")
        self.sw_batch_size, self.keep_clicked = int(sw_batch_size), bool(keep_clicked)
        self.honour_clicks = bool(honour_clicks)
        self.network = build_network(int(base_filters), int(max_filters))
        # a plain state dict, or the "net" entry of a training run's checkpoint (last.pt of `nfbench train dins`)
        load_checkpoint(self.network, weights, model_name=self.name, key="net", or_key=None)  # type: ignore[arg-type]
        self.network.to(self.device).eval()

    @classmethod
    def requirements(cls, weights: str | Path | None = None) -> list[str]:
        return missing_modules("torch", extra="torch") + missing_file(weights)

    def start(self, image: Volume, *, seed: int = 0) -> _DINsSession:
        """Preprocess one case (the model grid and its normalised image); ``seed`` is unused (deterministic)."""
        return _DINsSession(self, image)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Logits (2, S, R, A) of a channel-first window (3, S, R, A): [image, positive, negative]."""
        return self.forward(inputs[None])[0]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Logits (B, 2, S, R, A) of a batch of channel-first windows (B, 3, S, R, A), in one network call."""
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 4, 2, 3, 1))).to(self.device)
        with torch.inference_mode():
            out = self.network(tensor[..., :1], tensor[..., 1:])
        return out.permute(0, 4, 2, 3, 1).float().cpu().numpy()


class _DINsSession:
    """One case: the model-grid image (cached), the clicks since the last reset, the last answer.

    The window inputs live on the model grid padded (centred, zeros) to at least the window, as a
    sliding window pads; the guide is drawn on the model grid only, as without padding.
    """

    def __init__(self, model: DINsModel, image: Volume) -> None:
        self.model = model
        self.grid = GridMap.build(image.shape, image.spacing, codes=ORIENTATION, spacing=model.spacing)
        self.image = zscore_nonzero(self.grid.to_model(np.asarray(image.data, np.float32), order=1))
        before = [max(p - n, 0) // 2 for n, p in zip(self.grid.shape, model.roi)]
        self.region: BoxSlices = tuple(slice(b, b + n) for b, n in zip(before, self.grid.shape))  # type: ignore[assignment]
        """The model grid inside the padded one."""
        self.inputs = np.zeros((3, *(max(n, p) for n, p in zip(self.grid.shape, model.roi))), np.float32)
        self.inputs[(0, *self.region)] = self.image
        self.cache = WindowCache(self.inputs.shape[1:], model.roi, overlap=model.overlap, blend="gaussian")
        self.answer = NativeAnswer(self.grid, image.shape, keep_clicked=model.keep_clicked,
                                   honour_clicks=model.honour_clicks)
        self._changed: list[BoxSlices] = []
        logits = self.logits()
        self._no_click_box = mask_bbox(logits[1] > logits[0])
        self._no_click = self.cache.snapshot()
        self.reset()

    @property
    def windows_run(self) -> int:
        """Windows the network has evaluated in this session (the no-click pass included)."""
        return self.cache.windows_run

    @property
    def previous(self) -> np.ndarray:
        """The last answer on the native grid (empty after a reset)."""
        return self.answer.native

    def reset(self) -> None:
        """Forget the clicks; the no-click answers come back from the cache, nothing is run."""
        self.clicks: list[Click] = []
        self.inputs[1:] = 0
        self._changed = []
        self.cache.restore(self._no_click)
        self.answer.reset(self._no_click_box)

    def add_click(self, click: Click) -> None:
        self.clicks.append(click)
        box = add_guide(self.inputs[(slice(1, 3), *self.region)], self.grid.index_to_model(click.ijk), click.positive,
                        self.model.guide_sigma)
        self._changed.append(tuple(slice(s.start + r.start, s.stop + r.start) for s, r in zip(box, self.region)))

    def add_box(self, box: Box) -> None:
        raise ModelError("model 'dins' takes clicks only")

    def guide(self) -> np.ndarray:
        """The (2, S, R, A) guide of the session's clicks on the model grid."""
        return self.inputs[(slice(1, 3), *self.region)].copy()

    def logits(self) -> np.ndarray:
        """Blended logits (2, S, R, A) of the whole model grid; only the windows the new clicks reach are run."""
        changed, self._changed = self._changed, []
        out = self.cache.infer(lambda box: self.inputs[(slice(None), *box)], self.model.forward, changed,
                               batch_size=self.model.sw_batch_size)
        self.answer.changed(self.cache.blended, [s.start for s in self.region])
        return out[(slice(None), *self.region)]

    def predict(self) -> Prediction:
        """The mask after the clicks so far, as the box where it differs from the previous answer.

        Mapped back to the native grid only where windows were re-blended (or, with
        ``keep_clicked``, where kept components changed); equal to mapping the whole grid back.
        """
        logits = self.logits()
        seeds = [self.grid.index_to_model(c.ijk) for c in self.clicks if c.positive]
        return self.answer.update(lambda box: logits[(1, *box)] > logits[(0, *box)], seeds)

"""`sw-fastedit`: SW-FastEdit, a MONAI DynUNet on the image and two click-ball channels (seed_spec §3.1).

Inference follows the original evaluation chain (seed_spec §1.5, §2.6, §3.1): the canonical RAS
volume is reoriented to RSA (thick axis last), resampled linearly to 0.625 × 0.625 × 7.8 mm,
z-scored over its non-zero voxels and padded symmetrically with zeros to a multiple of 32; each
click is a ball of the 33 voxels within 2 voxels of it (σ = 1 Gaussian, min–max, ``> 0.1`` of a
single click), drawn per click rather than min–max normalised over all of them; the network runs
over the whole volume in windows of 128 × 128 × 64 voxels, overlap 0.25, blended with a Gaussian
(σ = 0.125 of the window); softmax + argmax, mapped back to the native grid (nearest neighbour).

Where it differs from MONAI 1.4 as the original ran it: windows are spread evenly between the
first and the last start (:func:`~nfbench.models.blocks.sliding_window.window_starts`; MONAI steps
by 96 voxels and moves only the last window back), so on a 2944-voxel axis the same 31 windows sit
up to 62 voxels away from MONAI's; the Gaussian is centred at the window's middle (MONAI: voxel
``n // 2``) and not clamped at 1e-3 (largest difference of the weights: 0.003); resampling aligns
the grids' extents (MONAI keeps the first voxel's centre), which is the identity when the scan
already has the model's spacing, as the original data nearly has (0.625 × 7.8 × 0.625 mm, RAS);
and the answer comes back to the native grid by nearest neighbour, where the original scored in its
own grid.

Incremental sliding window: the session keeps every window's answer
(:class:`~nfbench.models.blocks.sliding_window.WindowCache`). ``start`` runs all windows once
without clicks (the no-click answers, which ``reset`` returns to without running anything); after
a click only the windows that its ball reaches are run again, and the blend is redone over them,
so the answer equals a full sliding-window pass. ``session.windows_run`` counts the windows run.
The answer comes back to the native grid only over the re-blended windows
(:class:`~nfbench.models.blocks.native_answer.NativeAnswer`), exactly as a whole-grid remap.

Options beyond the original: ``keep_clicked`` answers only the connected components of the mask
that hold a positive click (see :mod:`~nfbench.models.blocks.native_answer`: in lesion scenarios
a model otherwise segments every lesion-like structure of the scan); ``honour_clicks`` puts
every positive click's model voxel in the answer (see the same module); ``threads`` sets PyTorch's
intra-op threads when the model is built (0 keeps PyTorch's default, the number of physical
cores: both cores of a 2-core machine); ``sw_batch_size`` windows go through the network in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nfbench.bbox import mask_bbox
from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, Prediction
from nfbench.models.blocks.checkpoints import load_checkpoint
from nfbench.models.blocks.encodings import balls
from nfbench.models.blocks.grids import GridMap
from nfbench.models.blocks.intensity import zscore_nonzero
from nfbench.models.blocks.native_answer import NativeAnswer
from nfbench.models.blocks.sliding_window import WindowCache
from nfbench.models.registry import missing_file, missing_modules
from nfbench.types import BoolMask, BoxSlices, Click

if TYPE_CHECKING:
    import torch

__all__ = ["BALL_RADIUS", "ORIENTATION", "ORIGINAL_FILTERS", "SWFastEditModel", "build_network", "load_weights",
           "parse_numbers"]

NAME = "sw-fastedit"
#: MONAI DynUNet's default widths (``min(2 ** (5 + n), 320)``), which the original network used.
ORIGINAL_FILTERS = (32, 64, 128, 256, 320, 320)
_KERNELS = [3] * 6
_STRIDES = [1, 2, 2, 2, 2, [2, 2, 1]]
_UPSAMPLE = [2, 2, 2, 2, [2, 2, 1]]
#: Each axis of a window must be a multiple of the network's total stride along it.
_STRIDE_PRODUCT = (32, 32, 16)
ORIENTATION = "RSA"
BALL_RADIUS = 2.0
"""Voxels (model grid): σ = 1 Gaussian of one click, min–max normalised, ``> 0.1`` = ``r² ≤ 4``, 33 voxels."""
_DIVISOR = 32
_SIGMA_SCALE = 0.125


def parse_numbers(text: str | Sequence[float], option: str, count: int, kind: type) -> tuple:
    """``"a,b,c"`` (or a sequence) as ``count`` positive numbers of ``kind``, refused naming the option."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(kind(p.strip() if isinstance(p, str) else p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != count or any(v <= 0 for v in values):
        raise ValueError(f"option {option!r} takes {count} positive {kind.__name__}s separated by commas, "
                         f"got {text!r}")
    return values


class SWFastEditModel:
    """SW-FastEdit (DynUNet, 3 input channels, 2 classes) with the original preprocessing and sliding window.

    Parameters
    ----------
    weights : Path
        A checkpoint: the original format (``{"net": state_dict}``, other entries ignored) or a
        plain state dict; either must fit the network exactly.
    filters : str
        Six channel widths, ``"32,64,128,256,320,320"`` (the original); narrower for CPU, e.g.
        ``"8,16,32,64,128,256"``.
    roi_size : str
        Sliding-window size in model voxels (R, S, A), multiples of 32, 32 and 16, more than one
        voxel at the deepest level.
    overlap : float
        Fraction of a window shared with its neighbour along each axis.
    sw_batch_size : int
        Windows per network call (PyTorch's CPU convolutions are several times faster at batch ≥ 2).
    spacing : str
        The model grid's spacing in mm along (R, S, A); another value only for models trained on it.
    device : str
        ``cpu`` or ``cuda`` (``auto``: CUDA when available).
    keep_clicked : bool
        Answer only the 26-connected components of the mask (model grid) that hold a positive click
        of the session, nothing before one: in lesion scenarios the model otherwise segments every
        lesion-like structure of the scan (a feasibility run: Dice after one click 0.73 instead of 0.99).
    honour_clicks : bool
        A positive click's voxel is lesion in the answer, whatever the network says there.
    threads : int
        PyTorch's intra-op threads, set (for the whole process) when the model is built; 0 keeps
        PyTorch's default, the number of physical cores (both cores of a 2-core machine).
    """

    name = NAME
    capabilities = frozenset({"click"})
    needs_weights = True
    description = "SW-FastEdit: MONAI DynUNet on image + click balls, sliding window (original preprocessing)"

    def __init__(
        self,
        weights: Path,
        *,
        filters: str = ",".join(map(str, ORIGINAL_FILTERS)),
        roi_size: str = "128,128,64",
        overlap: float = 0.25,
        sw_batch_size: int = 4,
        spacing: str = "0.625,0.625,7.8",
        device: str = "cpu",
        keep_clicked: bool = False,
        threads: int = 0,
        honour_clicks: bool = False,
    ) -> None:
        self.filters = parse_numbers(filters, "filters", 6, int)
        self.roi_size = parse_numbers(roi_size, "roi_size", 3, int)
        bad = [f"{n} ({a})" for n, a, m in zip(self.roi_size, ORIENTATION, _STRIDE_PRODUCT) if n % m]
        if bad:
            raise ValueError(f"option 'roi_size' must be multiples of {_STRIDE_PRODUCT} along (R, S, A) "
                             f"(the network's strides), got {', '.join(bad)}")
        if np.prod([n // m for n, m in zip(self.roi_size, _STRIDE_PRODUCT)]) < 2:
            raise ValueError(f"option 'roi_size' {self.roi_size} leaves one voxel at the network's deepest level, "
                             "where instance normalisation needs more; enlarge it")
        if not 0 <= overlap < 1:
            raise ValueError(f"option 'overlap' must be in [0, 1), got {overlap}")
        if sw_batch_size < 1:
            raise ValueError(f"option 'sw_batch_size' must be at least 1, got {sw_batch_size}")
        if threads < 0:
            raise ValueError(f"option 'threads' must be 0 (PyTorch's default) or more, got {threads}")
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.spacing = parse_numbers(spacing, "spacing", 3, float)
        self.keep_clicked, self.honour_clicks = bool(keep_clicked), bool(honour_clicks)
        import torch

        if threads:
            torch.set_num_threads(int(threads))

        from nfbench.models.spec import resolve_device

        self.device = torch.device(resolve_device(device))
        self.network = build_network(self.filters)
        load_weights(self.network, Path(weights))
        self.network.to(self.device).eval()

    @classmethod
    def requirements(cls, weights: Path | None = None) -> list[str]:
        return missing_modules("torch", "monai", extra="torch") + missing_file(weights)

    def start(self, image: Volume, *, seed: int = 0) -> _SWFastEditSession:
        """Preprocess one case once; ``seed`` is unused (inference is deterministic)."""
        return _SWFastEditSession(self, image)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The network's logits of a batch of windows ``(B, 3, *roi_size)`` → ``(B, 2, *roi_size)``."""
        import torch

        with torch.no_grad():
            logits = self.network(torch.from_numpy(batch).to(self.device))
        return logits.float().cpu().numpy()


def build_network(filters: Sequence[int]) -> torch.nn.Module:
    """The original DynUNet (seed_spec §3.1), with the given widths."""
    from monai.networks.nets import DynUNet

    return DynUNet(spatial_dims=3, in_channels=3, out_channels=2, kernel_size=_KERNELS, strides=_STRIDES,
                   upsample_kernel_size=_UPSAMPLE, filters=list(filters), norm_name="instance",
                   res_block=True, deep_supervision=False)


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """The state dict under ``net`` (the original format) or the whole file (a plain state dict), strictly."""
    load_checkpoint(network, path, model_name=NAME, key="net", or_key=None,
                    network=f"the network (filters {network.filters})")


def _symmetric_pad(shape: Sequence[int], target: Sequence[int]) -> list[tuple[int, int]]:
    """MONAI's symmetric padding: half of the difference before (rounded down), the rest after."""
    return [((t - n) // 2, t - n - (t - n) // 2) for n, t in zip(shape, target)]


class _SWFastEditSession:
    """One case: the preprocessed image on the working grid, the current object's clicks, the last answer.

    The working grid is the model grid padded to a multiple of 32 (the original's ``DivisiblePad``,
    where click balls may reach) and then, where it is smaller than a window, to the window
    (the sliding window's own padding, where every channel is 0).
    """

    def __init__(self, model: SWFastEditModel, image: Volume) -> None:
        self.model = model
        self.grid = GridMap.build(image.shape, image.spacing, codes=ORIENTATION, spacing=model.spacing)
        divisible = [-(-n // _DIVISOR) * _DIVISOR for n in self.grid.shape]
        first = _symmetric_pad(self.grid.shape, divisible)
        second = _symmetric_pad(divisible, [max(n, r) for n, r in zip(divisible, model.roi_size)])
        self.offset = tuple(a + b for (a, _), (b, _) in zip(first, second))
        """Where model voxel (0, 0, 0) lies in the working grid."""
        self.valid: BoxSlices = tuple(slice(b, b + n) for (b, _), n in zip(second, divisible))  # type: ignore[assignment]
        """The padded-to-32 grid inside the working grid: the original's network input."""
        padding = [(a + b, c + d) for (a, c), (b, d) in zip(first, second)]
        self.image = np.pad(zscore_nonzero(self.grid.to_model(image.data, order=1)), padding)
        self.clicks: list[Click] = []
        self.cache = WindowCache(self.image.shape, model.roi_size, overlap=model.overlap, sigma_scale=_SIGMA_SCALE)
        self.answer = NativeAnswer(self.grid, image.shape, keep_clicked=model.keep_clicked,
                                   honour_clicks=model.honour_clicks)
        self._pending: list[Click] = []
        self._no_click_box = mask_bbox(self.margin()[self.model_box] > 0)
        self._no_click = self.cache.snapshot()
        self.answer.reset(self._no_click_box)

    @property
    def windows_run(self) -> int:
        """Windows the network has evaluated in this session (the no-click pass included)."""
        return self.cache.windows_run

    # -- the session protocol ----------------------------------------------------------------------
    @property
    def previous(self) -> BoolMask:
        """The last answer on the native grid (empty after a reset)."""
        return self.answer.native

    def reset(self) -> None:
        """Forget the clicks; the no-click answers come back from the cache, nothing is run."""
        self.clicks = []
        self._pending = []
        self.cache.restore(self._no_click)
        self.answer.reset(self._no_click_box)

    def add_click(self, click: Click) -> None:
        self.clicks.append(click)
        self._pending.append(click)

    def add_box(self, box: object) -> None:
        raise ModelError(f"model {NAME!r} takes clicks only, not boxes")

    def predict(self) -> Prediction:
        """The mask after the clicks so far, as the box where it differs from the previous answer.

        Mapped back to the native grid only where windows were re-blended (or, with
        ``keep_clicked``, where kept components changed); equal to mapping the whole grid back.
        """
        margin = self.margin()[self.model_box]
        seeds = [self.grid.index_to_model(c.ijk) for c in self.clicks if c.positive]
        return self.answer.update(lambda box: margin[box] > 0, seeds)

    # -- inputs and inference -----------------------------------------------------------------------
    @property
    def model_box(self) -> BoxSlices:
        """The model grid inside the working grid."""
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.grid.shape))  # type: ignore[return-value]

    def working_index(self, click: Click) -> tuple[int, int, int]:
        """A click's voxel in the working grid."""
        return tuple(o + t for o, t in zip(self.offset, self.grid.index_to_model(click.ijk)))  # type: ignore[return-value]

    def inputs(self, box: BoxSlices | None = None) -> np.ndarray:
        """The network input ``(3, *box shape)`` of a box of the working grid (default: all of it):
        the z-scored image, then the positive and the negative click balls (1 inside, 0 outside)."""
        box = tuple(slice(0, n) for n in self.image.shape) if box is None else box  # type: ignore[assignment]
        shape = tuple(s.stop - s.start for s in box)
        out = np.zeros((3, *shape), np.float32)
        out[0] = self.image[box]
        near = [slice(max(b.start, v.start), min(b.stop, v.stop)) for b, v in zip(box, self.valid)]
        if any(s.stop <= s.start for s in near):
            return out
        local = tuple(slice(n.start - b.start, n.stop - b.start) for n, b in zip(near, box))
        reach = int(np.ceil(BALL_RADIUS))
        for channel, sign in ((1, True), (2, False)):
            points = [
                tuple(v - n.start for v, n in zip(index, near))
                for click in self.clicks if click.positive == sign
                for index in [self.working_index(click)]
                if all(n.start - reach <= v < n.stop + reach for v, n in zip(index, near))
            ]
            if points:
                out[(channel, *local)] = balls(tuple(n.stop - n.start for n in near), points, BALL_RADIUS)
        return out

    def reach(self, click: Click) -> BoxSlices:
        """The box of the working grid where a click's ball can change the input."""
        r = int(np.ceil(BALL_RADIUS))
        return tuple(slice(v - r, v + r + 1) for v in self.working_index(click))  # type: ignore[return-value]

    def margin(self) -> np.ndarray:
        """Blended logit of lesion minus background over the working grid (float32, the cache's array).

        Blending is linear, so this is the difference of the blended logits, and its sign is the
        argmax of their softmax (a tie is background, as ``argmax`` takes the first class). Only the
        windows that the clicks since the last call reach are run.
        """
        changed = [self.reach(click) for click in self._pending]
        self._pending = []
        margin = self.cache.infer(self.inputs, self._difference, changed, batch_size=self.model.sw_batch_size)
        self.answer.changed(self.cache.blended, self.offset)
        return margin

    def _difference(self, batch: np.ndarray) -> np.ndarray:
        logits = self.model.forward(batch)
        return logits[:, 1] - logits[:, 0]

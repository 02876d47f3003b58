"""`sam2`: SAM 2 on the coronal slices of a volume as a video, prompted by clicks and boxes (seed_spec §3.3).

Frames (:class:`~nfbench.models.blocks.frames.FrameStack`): the slices along the thick axis
(coronal whole-body MRI: posterior to anterior), in the layout of ``nfbench data slice`` (head up,
the patient's right on the image's left) with its intensities (the 0.5–99.5 percentile window of
the non-zero voxels to 0–255), resized to ``image_size`` squared (bilinear, antialiased), repeated
to RGB and ImageNet-normalised, exactly as ``nfbench train sam2`` trains, in memory.
``orientation="original"`` reproduces the original's evaluation input instead, for checkpoints
fine-tuned by the original code: frame ``k`` is ``image[:, :, k]`` of the RSA volume (rows from the
patient's left to right, columns from inferior to superior: the nfbench frame transposed across its
anti-diagonal, seed_spec §6.1.3), the percentile window over *all* voxels (MONAI
``ScaleIntensityRangePercentiles``), and SAM2's JPEG folder path replayed in memory: truncated to
uint8, JPEG-encoded at PIL's default quality, decoded, resized by PIL (bicubic), ImageNet-normalised.
(The original fine-tuned on unnormalised frames in the nfbench layout, §5.3, so neither view
matches its training exactly; the option reproduces its published numbers' input.)

Prompts: the clicks of the session grouped per frame, each frame with its box (SAM2's labels 2 and
3, first) and its clicks in order; a frame's previous mask logits go with its new prompts, as in
SAM2's interactive demo. Every prompted frame is a conditioning frame (SAM2's
``add_all_frames_to_correct_as_cond``, as SAM2 trains and as ``nfbench train sam2`` does); with
SAM2's default (off), which the original evaluation used (I), a correction on a frame that was
not the lesion's first prompted frame is overwritten by the next propagation. After the prompts,
every other frame is tracked from its nearest prompted frame (ties: the earlier one), forward and
backward, each run with the conditioning frames and its own run's frames as memory, all frames
re-tracked at every interaction (the original tracked forward and backward from the *earliest*
prompted frame only, so frames between two prompts saw only the forward pass). ``reset`` forgets the
object (a new lesion). Tracking uses ``SAM2Base.track_step``, SAM2's public per-frame step, with
nfbench's own small memory dictionaries, not ``SAM2VideoPredictor``'s inference state (a dict of
~20 keys that changed across sam2 releases and loads frames from disk). SAM2's evaluation
settings apply (``build_sam2_video_predictor(apply_postprocessing=True)``: multimask fallback by
stability, binarised masks from prompted frames in the memory, holes of up to ``fill_hole_area``
low-resolution pixels filled; the last runs with scipy here, 8-connected, where SAM2 needs its CUDA
extension and otherwise skips it with a warning). On CUDA the network runs under bfloat16 autocast
(as the original), on the CPU in float32.

Speed: the image encoder runs once per frame and case: its features are kept for every frame
(``cache_features``, 1024²: about 17 MB per frame in float32, the positional encodings shared) and
reused across prompts, propagations, lesions and scenarios; the original re-encoded every visited
frame at every interaction (SAM2's predictor keeps the latest frame only, which
``cache_features=false`` reproduces). ``session.encoded`` counts the encoder's runs. On a CPU the
memory attention of the tracking step, not the encoder, dominates from 512² up (it grows with the
square of the pixels: per frame, tiny SAM 2.1 on one core, encoder 0.20 s and tracking 0.09 s at
256², ≈ 0.6–0.9 s and ≈ 0.7 s at 512², ≈ 3.2 s and ≈ 6.4 s at 1024²), so the cache gains 4× per
interaction at 256², 2× at 512² and 1.6× at 1024² (``benchmarks/RESULTS.md``); ``stop_absent`` cuts the tracking instead. ``predict`` answers
the box of the voxels its mask holds, joined with the previous answer's.

Weights (``weights``): a file holding ``{"model": state_dict}`` (SAM2's released checkpoints and
``nfbench train sam2``'s), a plain state dict or a training state's ``net``; or the original's
folder ``SAM2/fold_K/`` with ``checkpoint.pt`` and the yaml configuration beside it, which is then
the configuration (unless ``config`` is given). Loading is strict: a key that does not fit is named.
``init=random`` builds an untrained network (tests and speed measurements only).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, Prediction
from nfbench.models.blocks.frames import IMAGENET_MEAN, IMAGENET_STD, FrameAnswer, FrameStack
from nfbench.models.blocks.sam2_frames import (
    CONFIG,
    POSTPROCESSING,
    FrameFeatures,
    build_network,
    encode_frames,
    load_weights,
    model_images,
    model_point,
    point_inputs,
)
from nfbench.models.registry import missing_file, missing_modules
from nfbench.types import Box, Click

if TYPE_CHECKING:
    import torch

__all__ = ["SAM2Model", "ORIENTATIONS", "INSTALL_HINT"]

NAME = "sam2"
ORIENTATIONS = ("nfbench", "original")
INITS = ("weights", "random")
INSTALL_HINT = "it is source-only: SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps sam2"
_PERCENTILES = (0.5, 99.5)
_ORIGINAL_AXIS = 1
"""The original sliced the RSA volume along A, canonical axis 1, whatever the spacing."""
_LOGIT_CLAMP = 32.0
"""SAM2's predictor clamps the previous logits it feeds back ("rare numerical issues")."""


def _weight_files(weights: Path) -> tuple[Path, Path | None]:
    """The checkpoint and, for the original's folder layout, the yaml beside it."""
    if not weights.is_dir():
        return weights, None
    checkpoint, yamls = weights / "checkpoint.pt", sorted(weights.glob("*.yaml"))
    if not checkpoint.is_file():
        raise ModelError(f"model {NAME!r}: weight folder {str(weights)!r} has no checkpoint.pt "
                         "(the original's layout is SAM2/fold_K/{checkpoint.pt, sam2.1_hiera_b+.yaml})")
    if len(yamls) > 1:
        raise ModelError(f"model {NAME!r}: weight folder {str(weights)!r} holds several yaml files "
                         f"({', '.join(p.name for p in yamls)}); pass config=PATH to choose one")
    return checkpoint, yamls[0] if yamls else None


class SAM2Model:
    """SAM 2 tracking a lesion through the coronal slices from clicks and boxes; see the module docstring.

    Parameters
    ----------
    weights : Path
        A checkpoint file (``{"model": state_dict}``, SAM2's format) or the original's folder
        ``SAM2/fold_K/`` (``checkpoint.pt`` and its yaml); not with ``init=random``.
    config : str
        A configuration of the ``sam2`` package (default ``configs/sam2.1/sam2.1_hiera_b+.yaml``,
        the original's; ``configs/sam2.1/sam2.1_hiera_t.yaml`` is the tiny one) or a yaml file;
        default: the yaml of a weight folder, else the original's.
    image_size : int
        Side of SAM2's square input, a multiple of 32 (1024 as released; the value a checkpoint
        was fine-tuned at).
    orientation : str
        ``nfbench`` (the frames of ``nfbench data slice``) or ``original`` (the original's
        evaluation input, for its checkpoints).
    init : str
        ``weights`` (load ``weights``) or ``random`` (an untrained network: tests, speed).
    cache_features : bool
        Keep every frame's image features for the case (default); off, only the latest frame's,
        as SAM2's video predictor (every visited frame is re-encoded at every interaction).
    fill_hole_area : int
        Fill background holes of up to this many low-resolution pixels (SAM2's evaluation: 8; 0: off).
    stop_absent : int
        End a propagation run after this many consecutive frames on which SAM2's object score says
        the object is absent (their masks are empty); the frames beyond stay empty, untracked.
        0 (default) tracks every frame, as SAM2 and the original. A lesion's slices are one run of
        frames, so in lesion scenarios this saves most of the tracking (memory attention) cost.
    device : str
        ``cpu`` or ``cuda`` (``auto``: CUDA when available).
    """

    name = NAME
    package = "sam2"  # the version the results record (nfbench.runner.provenance)
    capabilities = frozenset({"click", "box"})
    needs_weights = True
    description = "SAM 2 on coronal slices as a video: clicks and boxes, propagated forward and backward"

    def __init__(
        self,
        weights: Path | None = None,
        *,
        config: str | None = None,
        image_size: int = 1024,
        orientation: str = "nfbench",
        init: str = "weights",
        cache_features: bool = True,
        fill_hole_area: int = 8,
        stop_absent: int = 0,
        device: str = "cpu",
    ) -> None:
        if orientation not in ORIENTATIONS:
            raise ValueError(f"option 'orientation' must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
        if init not in INITS:
            raise ValueError(f"option 'init' must be one of {', '.join(INITS)}, got {init!r}")
        if int(image_size) < 64 or int(image_size) % 32:
            raise ValueError(f"option 'image_size' must be a multiple of 32 and >= 64, got {image_size!r}")
        if fill_hole_area < 0:
            raise ValueError(f"option 'fill_hole_area' must be 0 (off) or more, got {fill_hole_area}")
        if stop_absent < 0:
            raise ValueError(f"option 'stop_absent' must be 0 (track every frame) or more, got {stop_absent}")
        checkpoint = folder_config = None
        if init == "random":
            if weights is not None:
                raise ValueError("init=random builds an untrained network: give no weights with it")
        elif weights is None:
            raise ValueError("model 'sam2' needs weights=PATH (a checkpoint file or a SAM2/fold_K folder), "
                             "or init=random for an untrained network")
        else:
            checkpoint, folder_config = _weight_files(Path(weights))
        import torch

        from nfbench.models.spec import resolve_device

        self.config = str(config or folder_config or CONFIG)
        self.image_size = int(image_size)
        self.orientation = orientation
        self.cache_features = bool(cache_features)
        self.fill_hole_area = int(fill_hole_area)
        self.stop_absent = int(stop_absent)
        self.device = torch.device(resolve_device(device))
        self.network = build_network(self.config, self.image_size, overrides=POSTPROCESSING)
        if checkpoint is not None:
            load_weights(self.network, checkpoint)
        self.network.to(self.device).eval()

    @classmethod
    def requirements(cls, weights: Path | None = None, init: str = "weights") -> list[str]:
        missing = missing_modules("torch", "hydra", "iopath", extra="torch")
        if missing_modules("sam2"):
            missing.append(f"Python module 'sam2' is not installed ({INSTALL_HINT})")
        if init == "random":
            return missing
        if weights is not None and Path(weights).is_dir():
            return missing + missing_file(Path(weights) / "checkpoint.pt", what="checkpoint")
        return missing + missing_file(weights)

    def start(self, image: Volume, *, seed: int = 0) -> _SAM2Session:
        """Prepare the frames of one case; ``seed`` is unused (inference is deterministic)."""
        return _SAM2Session(self, image)


@dataclass(frozen=True)
class _View:
    """The model's frames: the nfbench layout, or (``transposed``) the original's, that layout transposed
    across its anti-diagonal; every voxel ↔ pixel mapping goes through the :class:`FrameStack`."""

    stack: FrameStack
    transposed: bool

    @property
    def frame_shape(self) -> tuple[int, int]:
        rows, columns = self.stack.frame_shape
        return (columns, rows) if self.transposed else (rows, columns)

    def flip(self, planes: np.ndarray) -> np.ndarray:
        """Frames ``(..., rows, columns)`` between the nfbench layout and this view (its own inverse)."""
        return planes[..., ::-1, ::-1].swapaxes(-1, -2) if self.transposed else planes

    def pixel(self, ijk) -> tuple[int, int, int]:
        frame, row, column = self.stack.pixel(ijk)
        if not self.transposed:
            return frame, row, column
        rows, columns = self.stack.frame_shape
        return frame, columns - 1 - column, rows - 1 - row


@dataclass
class _Prompts:
    """One frame's prompts: a box (model pixels ``x0, y0, x1, y1``) and clicks, in order."""

    box: tuple[float, float, float, float] | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def inputs(self, device) -> dict:
        box = [] if self.box is None else [self.box[:2], self.box[2:]]
        return point_inputs([*box, *self.points], [2, 3][:len(box)] + self.labels, device)


_KEPT = ("maskmem_features", "maskmem_pos_enc", "pred_masks", "obj_ptr", "object_score_logits")
"""What a frame's output keeps for the memory and the answer (SAM2's predictor keeps the same)."""


class _SAM2Session:
    """One case: the frames, their image features, the current object's prompts and per-frame outputs."""

    def __init__(self, model: SAM2Model, image: Volume) -> None:
        self.model = model
        original = model.orientation == "original"
        stack = FrameStack.of(image.shape, image.spacing, axis=_ORIGINAL_AXIS if original else None)
        self.view = _View(stack, transposed=original)
        self._answerer = FrameAnswer(stack)
        data = np.asarray(image.data, np.float32)
        if original:
            self._rgb = _original_frames(self.view, data, model.image_size)
        else:
            self._frames = stack.frames(data)
        self.features: dict[int, FrameFeatures] = {}
        self._positions: list | None = None
        self.encoded = 0
        """Frames the image encoder has run on in this session."""
        self.reset()

    @property
    def n_frames(self) -> int:
        return self.view.stack.n_frames

    # -- the session protocol ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the object: prompts, memories and masks (the image features stay)."""
        self.prompts: dict[int, _Prompts] = {}
        self.cond: dict[int, dict] = {}
        """Outputs of the prompted (conditioning) frames."""
        self.tracked: dict[int, tuple[dict, bool]] = {}
        """Every frame's latest output and whether it was tracked in reverse."""
        self._dirty: set[int] = set()
        self._answerer.reset()

    def add_click(self, click: Click) -> None:
        frame, row, column = self.view.pixel(click.ijk)
        prompts = self.prompts.setdefault(frame, _Prompts())
        prompts.points.append(model_point(row, column, self.view.frame_shape, self.model.image_size))
        prompts.labels.append(int(click.positive))
        self._dirty.add(frame)

    def add_box(self, box: Box) -> None:
        """A 2D box on one frame: its corner pixels' centres; a later box on the frame replaces it."""
        axis = self.view.stack.axis
        if box.hi[axis] - box.lo[axis] != 1:
            raise ModelError(f"model {NAME!r} takes 2D boxes on one frame (one voxel thick along axis {axis}); "
                             f"got lo={box.lo}, hi={box.hi}")
        corners = [self.view.pixel(box.lo), self.view.pixel(tuple(h - 1 for h in box.hi))]
        (r0, r1), (c0, c1) = (sorted(c[1] for c in corners), sorted(c[2] for c in corners))
        shape, size = self.view.frame_shape, self.model.image_size
        self.prompts.setdefault(box.lo[axis], _Prompts()).box = (*model_point(r0, c0, shape, size),
                                                                 *model_point(r1, c1, shape, size))
        self._dirty.add(box.lo[axis])

    def predict(self) -> Prediction:
        """The object's mask on every frame, as the box that holds it and the previous answer."""
        if not self._dirty:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3)  # type: ignore[arg-type]
        import torch

        cuda = self.model.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=cuda):
            for frame in sorted(self._dirty):
                self._prompt(frame)
            self._propagate()
        self._dirty.clear()
        return self._answer()

    # -- SAM2 --------------------------------------------------------------------------------------
    def _images(self, frame: int) -> torch.Tensor:
        import torch

        device, size = self.model.device, self.model.image_size
        if self.model.orientation == "nfbench":
            return model_images(self._frames[frame:frame + 1], size, device)
        mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]
        rgb = torch.from_numpy(self._rgb[frame]).to(device).permute(2, 0, 1).float() / 255.0
        return ((rgb - mean) / std)[None]

    def _features(self, frame: int) -> FrameFeatures:
        """The frame's image features, encoded once per case (``cache_features``) or on every visit."""
        if frame in self.features:
            return self.features[frame]
        encoded = encode_frames(self.model.network, self._images(frame))
        self.encoded += 1
        if self._positions is None:  # the same for every frame: one copy
            self._positions = encoded.positions
        features = FrameFeatures(encoded.feats, self._positions, encoded.sizes)
        if self.model.cache_features:
            self.features[frame] = features
        else:
            self.features = {frame: features}
        return features

    def _step(self, frame: int, memory: dict, *, init: bool = False, prompts: _Prompts | None = None,
              reverse: bool = False, previous: torch.Tensor | None = None) -> dict:
        features = self._features(frame)
        out = self.model.network.track_step(
            frame_idx=frame, is_init_cond_frame=init, current_vision_feats=features.feats,
            current_vision_pos_embeds=features.positions, feat_sizes=features.sizes,
            point_inputs=None if prompts is None else prompts.inputs(self.model.device), mask_inputs=None,
            output_dict=memory, num_frames=self.n_frames, track_in_reverse=reverse, run_mem_encoder=True,
            prev_sam_mask_logits=previous)
        kept = {key: out[key] for key in _KEPT}
        kept["pred_masks"] = _fill_holes(kept["pred_masks"], self.model.fill_hole_area)
        return kept

    def _prompt(self, frame: int) -> None:
        """Run a frame on all its prompts, with its previous logits and the memory it was tracked with."""
        import torch

        previous, reverse = self.tracked.get(frame, (None, False))
        memory = {"cond_frame_outputs": dict(self.cond),
                  "non_cond_frame_outputs": {t: out for t, (out, _) in self.tracked.items() if t not in self.cond}}
        logits = None if previous is None else torch.clamp(previous["pred_masks"], -_LOGIT_CLAMP, _LOGIT_CLAMP)
        out = self._step(frame, memory, init=previous is None, prompts=self.prompts[frame], reverse=reverse,
                         previous=logits)
        self.cond[frame] = out
        self.tracked[frame] = (out, False)

    def _propagate(self) -> None:
        """Track every frame without prompts from its nearest prompted frame (ties: the earlier one),
        a run ending early after ``stop_absent`` frames without the object."""
        prompted = sorted(self.cond)
        tracked = {t: (self.cond[t], False) for t in prompted}
        for n, start in enumerate(prompted):
            first = 0 if n == 0 else (prompted[n - 1] + start) // 2 + 1
            last = self.n_frames - 1 if n == len(prompted) - 1 else (start + prompted[n + 1]) // 2
            for reverse, order in ((True, range(start - 1, first - 1, -1)), (False, range(start + 1, last + 1))):
                run: dict[int, dict] = {}
                memory = {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": run}
                absent, patience = 0, self.model.stop_absent
                for frame in order:
                    run[frame] = self._step(frame, memory, reverse=reverse)
                    tracked[frame] = (run[frame], reverse)
                    if patience:
                        absent = absent + 1 if float(run[frame]["object_score_logits"].max()) <= 0 else 0
                        if absent == patience:
                            break
        self.tracked = tracked

    # -- the answer --------------------------------------------------------------------------------
    def _frame_masks(self) -> dict[int, np.ndarray]:
        """Each frame's mask in the nfbench layout (frames with none left out): logits upsampled (bilinear)."""
        from torch.nn import functional as F

        masks = {}
        for frame, (out, _) in self.tracked.items():
            logits = out["pred_masks"]
            if not bool((logits > 0).any()):
                continue
            full = F.interpolate(logits.float(), size=self.view.frame_shape, mode="bilinear", align_corners=False)
            masks[frame] = self.view.flip((full[0, 0] > 0).cpu().numpy())
        return masks

    def _answer(self) -> Prediction:
        return self._answerer(self._frame_masks())

def _fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """SAM2's ``fill_holes_in_mask_scores``: 8-connected background regions of at most ``max_area``
    pixels get the logit 0.1 (foreground)."""
    if max_area <= 0:
        return logits
    import torch

    background = (logits[0, 0] <= 0).cpu().numpy()
    labels, count = ndimage.label(background, structure=np.ones((3, 3), bool))
    if count == 0:
        return logits
    areas = np.bincount(labels.ravel())
    small = (areas <= max_area) & (np.arange(len(areas)) > 0)
    if not small.any():
        return logits
    holes = torch.from_numpy(small[labels]).to(logits.device)[None, None]
    return torch.where(holes, torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits)


def _original_frames(view: _View, data: np.ndarray, image_size: int) -> np.ndarray:
    """The original's frames as SAM2 read them from its JPEG folder: ``(n, S, S, 3)`` uint8.

    MONAI ``ScaleIntensityRangePercentiles(0.5, 99.5, 0, 255, clip=True)`` over all voxels; per frame
    ``Image.fromarray(float32).convert("RGB")`` (truncation), JPEG at PIL's default quality, and
    SAM2's ``_load_img_as_tensor``: decode, ``resize((S, S))`` (PIL's bicubic default).
    """
    from PIL import Image

    lo, hi = np.percentile(data, _PERCENTILES)
    scaled = np.clip((data - lo) / (hi - lo if hi > lo else 1.0) * 255.0, 0.0, 255.0).astype(np.float32)
    out = np.empty((view.stack.n_frames, image_size, image_size, 3), np.uint8)
    for frame in range(view.stack.n_frames):
        plane = np.ascontiguousarray(view.flip(view.stack.frame(scaled, frame)))
        buffer = io.BytesIO()
        Image.fromarray(plane).convert("RGB").save(buffer, format="JPEG")
        buffer.seek(0)
        out[frame] = np.asarray(Image.open(buffer).convert("RGB").resize((image_size, image_size)))
    return out

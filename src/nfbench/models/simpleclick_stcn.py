"""`simpleclick-stcn`: SimpleClick on every clicked coronal slice, STCN carrying the masks to the others.

The original benchmark's fourth model (seed_spec §3.4), which it never ran: its evaluation branch
is commented out. Here a case is the stack of coronal frames of ``nfbench data slice``
(:class:`~nfbench.models.blocks.frames.FrameStack`), the view both networks are trained on, and an
interaction is:

1. every frame that got a click since the last answer is segmented by SimpleClick
   (:class:`~nfbench.models.simpleclick.SliceClicker`) from all the clicks on that frame, in order,
   with the current answer on that frame as its previous mask (SimpleClick's iterative protocol);
2. STCN (:class:`~nfbench.models.stcn.Propagator`) propagates the masks of all clicked frames
   forward and backward through the stack, each frame from its nearest clicked frame, and stops in
   a direction where the mask vanishes.

Where it differs from the original's commented-out design, on purpose: the networks are loaded once
per model, not on every call; STCN runs on whole frames, not in 480 × 480 × 32 sliding windows
started from each window's largest slice; propagation starts from every clicked frame; the image's
intensities are the 0.5–99.5 percentiles of its non-zero voxels (all voxels in the original).

With SimpleClick weights that crop (``crop`` in the checkpoint, as the phantom weights), the clicks
of a frame are grouped by crop: a click outside the crop of the frame's earlier clicks starts a
segment of its own (a second lesion on the same slice in a global scenario), and a frame's mask is
the union of SimpleClick's answers to its segments (negative clicks outside every positive one's
crop have no effect there). A frame with negative clicks only (one the object leaked into) is not
given to SimpleClick, which learned from a positive first click: the 8-connected components of
the current mask under those clicks are removed instead ("not here"), and an emptied frame stops
propagation.

Costs: SimpleClick's image preprocessing and patch embedding are cached per frame, STCN's key
features once per frame and case; an interaction runs SimpleClick's backbone once per newly clicked
frame and STCN's value encoder and decoder once per frame the object spans.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, Prediction
from nfbench.models.blocks.frames import FrameAnswer, FrameStack
from nfbench.models.registry import missing_file, missing_modules
from nfbench.types import Box, Click

__all__ = ["SimpleClickSTCNModel", "WEIGHT_FILES"]

NAME = "simpleclick-stcn"
WEIGHT_FILES = ("checkpoint_simpleclick.pth", "checkpoint_stcn.pth")
"""The two checkpoints in the original's weight folder ``SimpleClick/fold_K/`` (seed_spec §2.1)."""


class SimpleClickSTCNModel:
    """SimpleClick on the clicked coronal slices, STCN to the others; see the module docstring.

    Parameters
    ----------
    weights : Path
        The original's folder (``checkpoint_simpleclick.pth`` and ``checkpoint_stcn.pth``: published
        SimpleClick and STCN checkpoints, or ``nfbench train simpleclick|stcn`` outputs renamed).
        SimpleClick's sizes (and ``crop``) are read from its checkpoint's ``config``.
    stcn_config : str
        STCN's widths: ``original`` (the published ``stcn.pth``) or ``reduced`` (the phantom's).
    threshold : float
        SimpleClick's and STCN's mask threshold on the probability (0.5 as the original).
    top_k : int
        STCN's memory read keeps the ``top_k`` most similar memory positions (20 as the original).
    max_side : int
        STCN sees frames scaled down to at most this many pixels on their longer side (0: native
        size; a whole-body coronal frame of 2900 × 800 pixels costs ~100× more at native size).
    threads : int
        Torch CPU threads (0: torch's default).
    device : str
        ``cpu`` or ``cuda`` (``auto``: CUDA when available).
    """

    name = NAME
    capabilities = frozenset({"click"})
    needs_weights = True
    description = "SimpleClick on each clicked coronal slice, STCN propagating to the others (the original's 4th model)"

    def __init__(self, weights: Path | None = None, *, stcn_config: str = "original", threshold: float = 0.5,
                 top_k: int = 20, max_side: int = 1024, threads: int = 0, device: str = "cpu") -> None:
        if weights is None:
            raise ValueError(f"model {NAME!r} needs weights=DIR, a folder with {' and '.join(WEIGHT_FILES)}")
        folder = Path(weights)
        if not folder.is_dir():
            raise ModelError(f"model {NAME!r}: weights {str(folder)!r} is not a folder with "
                             f"{' and '.join(WEIGHT_FILES)}")
        self._load(folder / WEIGHT_FILES[0], folder / WEIGHT_FILES[1], stcn_config=stcn_config, threshold=threshold,
                   top_k=top_k, max_side=max_side, threads=threads, device=device)

    def _load(self, simpleclick_file: Path, stcn_file: Path, *, stcn_config: str, threshold: float, top_k: int,
              max_side: int, threads: int, device: str) -> None:
        from nfbench.models.blocks.stcn_network import build_network, load_weights
        from nfbench.models.simpleclick import SliceClicker
        from nfbench.models.spec import resolve_device

        if not 0 < threshold < 1:
            raise ValueError(f"option 'threshold' must be in (0, 1), got {threshold}")
        if top_k < 1:
            raise ValueError(f"option 'top_k' must be at least 1, got {top_k}")
        if max_side and max_side < 16:
            raise ValueError(f"option 'max_side' must be 0 (native size) or at least 16, got {max_side}")
        self.device = resolve_device(device)
        self.threshold, self.top_k = float(threshold), int(top_k)
        self.max_side, self.threads = int(max_side), int(threads)
        self.clicker = SliceClicker.from_weights(simpleclick_file, device=self.device, threshold=self.threshold,
                                                 threads=self.threads)
        self.stcn = build_network(stcn_config)
        load_weights(self.stcn, stcn_file)

    @classmethod
    def requirements(cls, weights: Path | None = None) -> list[str]:
        missing = missing_modules("torch", "torchvision", extra="torch")
        if weights is None:
            return missing + [f"no weight folder given (pass --weights DIR, a folder with "
                              f"{' and '.join(WEIGHT_FILES)})"]
        return missing + [m for name in WEIGHT_FILES for m in missing_file(Path(weights) / name, what="checkpoint")]

    def start(self, image: Volume, *, seed: int = 0) -> _Session:
        """Cut the case into frames; ``seed`` is unused (inference is deterministic)."""
        return _Session(self, image)


class _Session:
    """One case: its frames, STCN's keys, the object's clicks (grouped per frame and crop) and masks."""

    def __init__(self, model: SimpleClickSTCNModel, image: Volume) -> None:
        from nfbench.models.stcn import Propagator

        self.stack = FrameStack.of(image.shape, image.spacing)
        self.frames = self.stack.frames(np.asarray(image.data, np.float32))
        self.clicker = model.clicker.for_case()
        self.propagator = Propagator(model.stcn, self.frames, device=model.device, top_k=model.top_k,
                                     threshold=model.threshold, max_side=model.max_side or None,
                                     threads=model.threads)
        self._answer = FrameAnswer(self.stack)
        self.reset()

    def reset(self) -> None:
        """Forget the object (the frames' cached features stay)."""
        self.segments: dict[int, list[list[tuple[int, int, bool]]]] = {}
        """Per clicked frame, its clicks in groups that share one SimpleClick crop."""
        self.clicked: dict[int, np.ndarray] = {}
        """SimpleClick's mask of every clicked frame."""
        self.masks: dict[int, np.ndarray] = {}
        """The current answer, frame by frame."""
        self._dirty: set[int] = set()
        self._answer.reset()

    def add_click(self, click: Click) -> None:
        frame, row, column = self.stack.pixel(click.ijk)
        point = (row, column, bool(click.positive))
        groups = self.segments.setdefault(frame, [])
        crop = self.clicker.crop
        for group in groups:
            corner = self.clicker.window(self.stack.frame_shape, group, None)
            if corner is None or (0 <= row - corner[0] < crop and 0 <= column - corner[1] < crop):
                group.append(point)
                break
        else:
            groups.append([point])
        self._dirty.add(frame)

    def add_box(self, box: Box) -> None:
        raise ModelError(f"model {NAME!r} takes clicks only")

    def predict(self) -> Prediction:
        for frame in sorted(self._dirty):
            self.clicked[frame] = self._frame_mask(frame)
        self._dirty.clear()
        self.masks = self.propagator.propagate(self.clicked, stop_empty=True)
        return self._answer(self.masks)

    def _frame_mask(self, frame: int) -> np.ndarray:
        """A clicked frame's mask: the union of SimpleClick's answers to its segments that hold a
        positive click, or, on a frame with negative clicks only, the current answer there without the
        components under those clicks.

        SimpleClick learned from a positive first click; a frame the object leaked into gets negative
        clicks only, and there the user means "not here", which removing what they clicked on gives.
        """
        previous = self.masks.get(frame)
        segments = [group for group in self.segments[frame] if any(p for *_, p in group)]
        if not segments:
            if previous is None or not previous.any():
                return np.zeros(self.stack.frame_shape, bool)
            components, _ = ndimage.label(previous, structure=np.ones((3, 3), bool))
            clicks = [click for group in self.segments[frame] for click in group]
            hit = [components[row, column] for row, column, _ in clicks if previous[row, column]]
            return previous & ~np.isin(components, hit)
        mask = np.zeros(self.stack.frame_shape, bool)
        for group in segments:
            mask |= self.clicker.predict(self.frames[frame], group, previous, key=frame)
        return mask

    def close(self) -> None:
        """Free the case's cached features."""
        self.clicker.clear()
        self.propagator = None  # type: ignore[assignment]

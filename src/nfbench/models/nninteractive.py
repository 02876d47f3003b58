"""`nninteractive`: nnInteractive (MIC-DKFZ), a promptable 3D nnU-Net, through its own package.

The ``nninteractive`` package (import name ``nnInteractive``; ``pip install "nfbench[nninteractive]"``)
runs the network; this module maps nfbench's prompts onto its session API
(``nnInteractiveInferenceSession``) and its answers back. Weights are never downloaded: the model
loads a local folder in the package's trained-model layout (``plans.json``, ``dataset.json``,
``inference_session_class.json`` or ``inference_info.json``, and one ``fold_*/checkpoint_final.pth``),
given as ``weights`` (``--weights DIR``) or, without it, by the environment variable
``NNINTERACTIVE_MODEL_DIR``. ``DIR`` may be that folder itself, or a folder holding exactly one
``nnInteractive_*`` model folder directly or under ``models/`` (the layout of the package's own
downloader and of the Hugging Face repository ``MIC-DKFZ/nnInteractive``).

**Image, axes and spacing.** The image goes in with its intensities as read, of shape ``(1, x, y, z)``
(the package converts it to float32, on a copy): nnInteractive normalises it itself (z-score over the
non-zero region) and its readme forbids any windowing or normalisation before. It works in voxel space: the package ignores the spacing (its
``set_image`` takes ``image_properties`` "for API compatibility, currently unused"), so nothing is
resampled and the thick coronal slices of whole-body MRI stay as they are. ``axis_order`` says which
canonical axes become the package's ``x, y, z``: ``ijk`` (default) hands over the canonical RAS grid
unchanged, so clicks, boxes and answers need no mapping at all; ``kji`` is the order in which
SimpleITK (and nnU-Net, which trained the model) reads a volume stored in RAS, for comparison.

**Prompts.** A click becomes ``add_point_interaction(voxel, include_interaction=positive)`` and a box
``add_bbox_interaction([[lo, hi], ...], include_interaction=True)`` (half-open, as nfbench's
:class:`~nfbench.types.Box`): nfbench's boxes lie on one coronal slice (extent 1 along axis 1), which
is exactly nnInteractive's 2D box (one axis ``[d, d + 1]``). A 3D box is passed on as well, and a
checkpoint without 3D boxes (the released ones) refuses it with its own message. Prompts wait for
``predict``, which gives them to the package in order (boxes first, as the engine adds them) and
lets it predict after **each** one: with several prompts before one prediction the package centres
its prediction on the last prompt only, and its authors say the model "expects to be able to make a
prediction after each newly added interaction" (MIC-DKFZ/nnInteractive#4). The engine's global
scenarios give a box per lesion at once, each of which then gets its prediction.

**Previous mask.** nnInteractive keeps its own last prediction as an input channel between prompts
(it writes each answer into its ``prev_seg`` channel), and nfbench's sessions keep their own state
(DESIGN §3), so the previous answer is *not* fed back with ``add_initial_seg_interaction``: that call
resets every prompt, and the model would re-read a mask it already holds. ``reset()`` is
``reset_interactions()``: prompts, the previous-segmentation channel and the answer buffer are
cleared, as the engine's new lesion or scenario needs.

**Answers.** The package writes into a target buffer kept by the session (``uint8``, the image's
shape); each ``add_*`` call returns the box it wrote (package ≥ 2.5). ``predict`` answers a
:class:`~nfbench.models.base.Prediction` of the union of those boxes (the whole image when the
package returns none): no full-volume scan per prompt.

One package session serves every case of a loaded model (``set_image`` replaces the image): a
session from ``start`` stays usable until the next ``start``, then refuses to run. The package
prints progress on every prediction; it is silenced unless ``verbose`` (then on stderr).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from nfbench.io.volume import Volume
from nfbench.models.base import ModelError, Prediction
from nfbench.models.registry import missing_modules
from nfbench.types import Box, BoxSlices, Click

__all__ = ["NNInteractiveModel", "PackageSession", "MODEL_DIR_ENV", "AXIS_ORDERS", "find_model_folder",
           "folder_problems"]

NAME = "nninteractive"
MODEL_DIR_ENV = "NNINTERACTIVE_MODEL_DIR"
AXIS_ORDERS = ("ijk", "ikj", "jik", "jki", "kij", "kji")
_SESSION_MODULE = "nnInteractive.inference.inference_session"
_METADATA = ("inference_info.json", "inference_session_class.json")
_CHECKPOINT = "checkpoint_final.pth"
_LAYOUT = (f"plans.json, dataset.json, {' or '.join(_METADATA)} and one fold_*/{_CHECKPOINT} "
           "(the nnInteractive_v1.0 folder of the Hugging Face repository MIC-DKFZ/nnInteractive)")


class PackageSession(Protocol):
    """What this module uses of ``nnInteractiveInferenceSession`` (a stand-in provides the same)."""

    def set_image(self, image: np.ndarray, image_properties: dict | None = None) -> None: ...
    def set_target_buffer(self, target_buffer: np.ndarray) -> None: ...
    def reset_interactions(self) -> None: ...
    def add_point_interaction(self, coordinates: Sequence[int], include_interaction: bool,
                              run_prediction: bool = True) -> list[list[int]] | None: ...
    def add_bbox_interaction(self, bbox_coords: Sequence[Sequence[int]], include_interaction: bool,
                             run_prediction: bool = True) -> list[list[int]] | None: ...


# -- the model folder ------------------------------------------------------------------------------
def folder_problems(folder: Path) -> list[str]:
    """What keeps ``folder`` from being an nnInteractive model folder, one sentence per missing file."""
    if not folder.is_dir():
        return [f"nnInteractive model folder {str(folder)!r} does not exist"]
    problems = [f"{str(folder / name)!r} is missing" for name in ("plans.json", "dataset.json")
                if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in _METADATA):
        problems.append(f"{str(folder)!r} holds neither {' nor '.join(_METADATA)}")
    folds = sorted(p.name for p in folder.glob("fold_*") if p.is_dir())
    if len(folds) != 1:
        problems.append(f"{str(folder)!r} must hold exactly one fold_* folder, found {folds or 'none'}")
    elif not (folder / folds[0] / _CHECKPOINT).is_file():
        problems.append(f"{str(folder / folds[0] / _CHECKPOINT)!r} is missing")
    if problems:
        problems.append(f"an nnInteractive model folder holds {_LAYOUT}")
    return problems


def _candidates(root: Path) -> list[Path]:
    """The model folders inside a download root: ``nnInteractive_*`` directly or under ``models/``."""
    return sorted(p for pattern in ("nnInteractive_*", "models/nnInteractive_*") for p in root.glob(pattern)
                  if (p / "plans.json").is_file())


def find_model_folder(weights: Path | str | None) -> tuple[Path | None, list[str]]:
    """The model folder that ``weights`` (else ``$NNINTERACTIVE_MODEL_DIR``) names, and what is wrong.

    Returns the folder and an empty list when it can be loaded; otherwise the folder (or None) and
    one sentence per problem, naming the path and the file that is expected.
    """
    given = weights if weights is not None else os.environ.get(MODEL_DIR_ENV) or None
    if given is None:
        return None, [(f"no nnInteractive model folder given (pass --weights DIR or set {MODEL_DIR_ENV}=DIR; "
                       f"the folder holds {_LAYOUT}; nfbench never downloads it)")]
    root = Path(given).expanduser()
    if root.is_file():
        return None, [f"{str(root)!r} is a file: nnInteractive loads a folder, which holds {_LAYOUT}"]
    if root.is_dir() and not (root / "plans.json").is_file():
        found = _candidates(root)
        if len(found) == 1:
            root = found[0]
        elif found:
            names = ", ".join(str(p.relative_to(root)) for p in found)
            return None, [f"{str(root)!r} holds several nnInteractive models ({names}): pass one of them"]
    problems = folder_problems(root)
    return (None if problems else root), problems


@contextlib.contextmanager
def _output(verbose: bool) -> Iterator[None]:
    """The package prints on every prediction: to stderr when verbose, else nowhere (stdout stays ours)."""
    with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
        yield


def _permutation(axis_order: str) -> tuple[int, int, int]:
    if axis_order not in AXIS_ORDERS:
        raise ValueError(f"option 'axis_order' takes one of {', '.join(AXIS_ORDERS)} (the canonical axes "
                         f"in the order the package's x, y, z take them), got {axis_order!r}")
    return tuple("ijk".index(c) for c in axis_order)  # type: ignore[return-value]


class NNInteractiveModel:
    """nnInteractive from a local model folder, clicks and 2D boxes, one prediction per prompt.

    Parameters
    ----------
    weights : Path, optional
        The model folder (or a folder holding one ``nnInteractive_*`` model); without it,
        ``$NNINTERACTIVE_MODEL_DIR``. Never downloaded.
    device : str
        ``cpu`` or ``cuda`` (``auto``: CUDA when available). The released model is meant for a GPU
        (the paper: 0.12–3.7 s per prompt on an RTX 4090); on a CPU a prompt takes many seconds.
    threads : int
        PyTorch's intra-op threads, which the package sets for the whole process; 0 keeps the
        current number (the package's own default would be 8).
    autozoom : bool
        nnInteractive's AutoZoom: the prediction window grows (up to 4×) while the object touches
        its border, then is refined at full resolution. Off: one 192³ window around each prompt.
    axis_order : str
        The canonical axes in the order the package's ``x, y, z`` take them (``ijk``: unchanged;
        ``kji``: as SimpleITK reads a RAS volume).
    verbose : bool
        Show the package's progress output (on stderr) and its own verbose messages.
    """

    name = NAME
    capabilities = frozenset({"click", "box"})
    needs_weights = True
    description = "nnInteractive (MIC-DKFZ): promptable 3D nnU-Net, clicks and 2D boxes, local weights folder"

    def __init__(
        self,
        weights: Path | None = None,
        *,
        device: str = "cpu",
        threads: int = 0,
        autozoom: bool = True,
        axis_order: str = "ijk",
        verbose: bool = False,
    ) -> None:
        if threads < 0:
            raise ValueError(f"option 'threads' must be 0 (keep the current number) or more, got {threads}")
        permutation = _permutation(axis_order)
        problems = self.requirements(weights)
        if problems:
            raise ModelError(f"model {NAME!r} is not available: {'; '.join(problems)}")
        folder = find_model_folder(weights)[0]
        import torch
        from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

        from nfbench.models.spec import resolve_device

        with _output(verbose):
            session = nnInteractiveInferenceSession(
                device=torch.device(resolve_device(device)), verbose=verbose,
                torch_n_threads=int(threads) or torch.get_num_threads(), do_autozoom=bool(autozoom),
                enable_undo=False)
            try:
                session.initialize_from_trained_model_folder(str(folder))
            except Exception as err:  # the package raises bare KeyErrors and asserts on a broken folder
                raise ModelError(f"model {NAME!r}: cannot load the model folder {str(folder)!r}: "
                                 f"{type(err).__name__}: {err}") from err
        self.folder: Path | None = folder
        self.license: str | None = getattr(session, "license", None)
        """The checkpoint's licence as the package reads it (the released weights: CC BY-NC-SA 4.0)."""
        self._adopt(session, permutation, verbose)

    @classmethod
    def from_session(cls, session: PackageSession, *, axis_order: str = "ijk",
                     verbose: bool = False) -> NNInteractiveModel:
        """Wrap a package session that is already initialised, or a stand-in with its methods.

        The way to use a session built elsewhere (a shared network, the package's own loading) and
        the way tests drive this adapter without the package.
        """
        model = cls.__new__(cls)
        model.folder, model.license = None, getattr(session, "license", None)
        model._adopt(session, _permutation(axis_order), verbose)
        return model

    def _adopt(self, session: PackageSession, permutation: tuple[int, int, int], verbose: bool) -> None:
        self.package_session = session
        self.permutation = permutation
        self.verbose = verbose
        self._active: _NNInteractiveSession | None = None

    @classmethod
    def requirements(cls, weights: Path | None = None) -> list[str]:
        missing = missing_modules("torch", "nnunetv2", "nnInteractive", extra=NAME)
        return missing + find_model_folder(weights)[1]

    def start(self, image: Volume, *, seed: int = 0) -> _NNInteractiveSession:
        """Hand the case's image to the package (which normalises it); ``seed`` is unused."""
        session = _NNInteractiveSession(self, image)
        self._active = session
        return session


class _NNInteractiveSession:
    """One case on the model's package session: prompts waiting for ``predict`` and the answer buffer."""

    def __init__(self, model: NNInteractiveModel, image: Volume) -> None:
        self.model = model
        self.shape = image.shape
        perm = model.permutation
        self.inverse = tuple(int(a) for a in np.argsort(perm))
        self.target = np.zeros(tuple(self.shape[a] for a in perm), np.uint8)
        """The package's answer buffer, in its axis order."""
        self._pending: list[Box | Click] = []
        spacing = tuple(image.spacing[a] for a in perm)
        engine = model.package_session
        with _output(model.verbose):
            try:
                engine.set_image(np.expand_dims(image.data.transpose(perm), 0), {"spacing": spacing})
                engine.set_target_buffer(self.target)
                # set_image preprocesses on a thread of its own; wait here so that the work counts in
                # start(), not in the latency of the first prompt (the package has no public wait).
                wait = getattr(engine, "_finish_preprocessing_and_initialize_interactions", None)
                if callable(wait):
                    wait()
            except ValueError as err:  # the package's refusals of an image (an all-zero one)
                raise ModelError(f"model {NAME!r} refused the image: {err}") from err

    # -- mapping between nfbench's canonical grid and the package's --------------------------------
    def to_package(self, ijk: Sequence[int]) -> tuple[int, int, int]:
        """A canonical voxel index in the package's axis order."""
        return tuple(int(ijk[a]) for a in self.model.permutation)  # type: ignore[return-value]

    def box_to_package(self, box: Box) -> list[list[int]]:
        """An nfbench box as the package's ``[[lo, hi], ...]`` (half-open, its axis order)."""
        return [[box.lo[a], box.hi[a]] for a in self.model.permutation]

    def from_package(self, bbox: Sequence[Sequence[int]]) -> BoxSlices:
        """A box the package returned (its axis order) as canonical slices."""
        return tuple(slice(int(bbox[m][0]), int(bbox[m][1])) for m in self.inverse)  # type: ignore[return-value]

    # -- the session protocol ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every prompt and the answer (the package's ``reset_interactions``)."""
        self._check_active()
        self._pending = []
        with _output(self.model.verbose):
            self.model.package_session.reset_interactions()

    def add_click(self, click: Click) -> None:
        self._pending.append(click)

    def add_box(self, box: Box) -> None:
        self._pending.append(box)

    def predict(self) -> Prediction:
        """Give the waiting prompts one at a time, each predicted; the union of the boxes they changed."""
        self._check_active()
        engine, prompts, self._pending = self.model.package_session, self._pending, []
        boxes: list[BoxSlices] = []
        whole = False
        with _output(self.model.verbose):
            for prompt in prompts:
                try:
                    if isinstance(prompt, Click):
                        changed = engine.add_point_interaction(self.to_package(prompt.ijk),
                                                               include_interaction=prompt.positive)
                    else:
                        changed = engine.add_bbox_interaction(self.box_to_package(prompt), include_interaction=True)
                except ValueError as err:  # the package's refusals (a 3D box, an all-zero image)
                    raise ModelError(f"model {NAME!r} refused {prompt}: {err}") from err
                if changed is None:
                    whole = True
                else:
                    boxes.append(self.from_package(changed))
        if whole:
            box: BoxSlices = tuple(slice(0, n) for n in self.shape)  # type: ignore[assignment]
        elif boxes:
            box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
                        for a in range(3))  # type: ignore[assignment]
        else:
            box = (slice(0, 0),) * 3  # type: ignore[assignment]
        package_box = tuple(box[a] for a in self.model.permutation)
        mask = self.target[package_box].transpose(self.inverse).astype(bool)
        return Prediction(mask, box)

    def _check_active(self) -> None:
        if self.model._active is not self:
            raise ModelError(f"model {NAME!r}: this session's case was replaced by a later start(); "
                             "one loaded nnInteractive model serves one case at a time")

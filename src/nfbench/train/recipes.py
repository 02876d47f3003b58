"""How each trainable model learns: network, preprocessing, simulated clicks, loss, optimiser, schedule.

One :class:`Recipe` per model, following the original training code (seed_spec §5.1, §5.2) except
where noted. A recipe's options are the model's own options that fix the network and its grid
(``filters``, ``roi_size``, ``spacing``, …), so a checkpoint trained with options ``O`` evaluates
with ``--model NAME -o O``; the patch a recipe trains on is the model's sliding-window size (the
original SW-FastEdit cropped 224 × 224 × 64 and ran its 128 × 128 × 64 sliding window inside the
crop; one window per patch trains the same network at a fraction of the cost).
SAM2 (§5.3) and STCN (§5.5), trained on clips of 2D frames, have their recipes in
:mod:`nfbench.train.sam2_recipe` and :mod:`nfbench.train.stcn_recipe`; SimpleClick (§5.4), trained on
single frames, in :mod:`nfbench.train.simpleclick_recipe`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from nfbench.interaction.policies import next_clicks
from nfbench.io.volume import Volume
from nfbench.models.blocks.encodings import balls
from nfbench.models.blocks.grids import GridMap
from nfbench.models.blocks.intensity import zscore_nonzero
from nfbench.train.data import GridCase, Patch, PatchSampler
from nfbench.types import Click

if TYPE_CHECKING:
    import torch

__all__ = ["POSITIVE_CLICKS", "TARGETS", "RECIPES", "Recipe", "PatchRecipe", "SWFastEditRecipe", "DINsRecipe", "recipe_for"]

POSITIVE_CLICKS = ("original", "per-lesion")
"""How the DINs recipe draws its positive clicks (:class:`DINsRecipe`)."""
TARGETS = ("all", "clicked")
"""What the SW-FastEdit recipe's target is (:class:`SWFastEditRecipe`)."""


class Recipe(ABC):
    """The model-specific half of training; :func:`nfbench.train.loop.train` is the other half.

    A recipe draws its training samples (:meth:`sampler`) and turns a batch of them into a loss
    (:meth:`sample_loss`); :class:`PatchRecipe` does both for the 3D CNNs trained on patches.
    """

    model: str
    defaults: Mapping[str, object]
    lr: float
    flip_rate: float
    amp_dtype: str = "float16"
    """The autocast type on CUDA; only ``float16`` needs the gradient scaler."""
    clip_norm: float | None = None
    """Gradient clipping (L2 norm over all parameters), none by default."""
    evaluated: bool = True
    """Validation by ``nfbench evaluate`` of the model; otherwise by :meth:`sample_dice`."""
    settings: tuple[str, ...] = ("interactions", "click_policy")
    """The training settings (:class:`~nfbench.train.TrainConfig` fields) the constructor takes."""

    def __init__(self, options: Mapping[str, object]) -> None:
        """Keep the options that fix the network and its grid; the model checks the others when it loads."""
        self.options = {**self.defaults, **{k: v for k, v in options.items() if k in self.defaults}}

    # -- what every recipe provides ----------------------------------------------------------------
    @abstractmethod
    def build_network(self) -> torch.nn.Module:
        """The network, randomly initialised from torch's generator."""

    @abstractmethod
    def load_init(self, network: torch.nn.Module, path: Path) -> None:
        """Load a checkpoint to start from (the original format or ours), strictly."""

    @abstractmethod
    def prepare(self, image: Volume, label: Volume) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        """A case on the model's grid, as its session preprocesses it: image, instance label, spacing."""

    @abstractmethod
    def sampler(self, cases: Sequence[GridCase], *, lesion_rate: float, training: bool) -> PatchSampler:
        """What draws the samples (patches, clips) from the cases, with ``draw(rng)``; augmented when ``training``."""

    @abstractmethod
    def sample_loss(self, samples: Sequence[Any], network: torch.nn.Module, rng: np.random.Generator,
                    device: torch.device, *, amp: bool) -> torch.Tensor:
        """The loss of a batch of samples, clicks simulated (possibly with the network itself)."""

    def sample_dice(self, network: torch.nn.Module, samples: Sequence[Any], rng: np.random.Generator,
                    device: torch.device, *, amp: bool = False) -> dict[str, float]:
        """Mean Dice ``first`` (after the first click) and ``last`` (after the corrections) on samples."""
        raise NotImplementedError(f"{self.model} is validated with nfbench evaluate")

    @abstractmethod
    def optimizer(self, network: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        """The original optimiser."""

    @abstractmethod
    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
        """The original learning-rate schedule."""

    def step_scheduler(self, scheduler: Any, val_loss: float) -> None:
        """Advance the schedule at the end of an epoch."""
        scheduler.step()

    @abstractmethod
    def save_weights(self, network: torch.nn.Module, path: Path) -> None:
        """The network in the format the model loads (``--weights``)."""


class PatchRecipe(Recipe):
    """A 3D network trained on patches of its sliding window: inputs and target per batch, then its loss."""

    @property
    @abstractmethod
    def patch_size(self) -> tuple[int, int, int]:
        """The training patch (the model's window), in model-grid voxels."""

    @abstractmethod
    def batch(self, patches: Sequence[Patch], network: torch.nn.Module, rng: np.random.Generator,
              device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Network inputs and target of a batch, clicks simulated (possibly with the network itself)."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The original loss of the network's output against the target."""

    def sampler(self, cases, *, lesion_rate, training):
        return PatchSampler(cases, self.patch_size, lesion_rate=lesion_rate,
                            flip_rate=self.flip_rate if training else 0.0)

    def sample_loss(self, samples, network, rng, device, *, amp):
        import torch

        inputs, target = self.batch(samples, network, rng, device)
        with torch.autocast(device.type, dtype=getattr(torch, self.amp_dtype), enabled=amp):
            return self.loss(network(*inputs), target)


def _grid_arrays(image: Volume, label: Volume, codes: str, spacing: Sequence[float]) -> tuple:
    """A case on a model grid exactly as the models' sessions preprocess it (linear image, nearest label)."""
    grid = GridMap.build(image.shape, image.spacing, codes=codes, spacing=spacing)
    data = zscore_nonzero(grid.to_model(np.asarray(image.data, np.float32), order=1))
    return data, grid.to_model(np.asarray(label.data), order=0), grid.spacing


def corrective_rounds(predict: Callable[[], np.ndarray], encode: Callable[[int, list[Click]], None],
                      truth: np.ndarray, rounds: np.ndarray, *, spacing: Sequence[float], policy: str,
                      rng: np.random.Generator) -> None:
    """``rounds[i]`` rounds of no-gradient prediction and corrective clicks on sample ``i``'s error.

    ``predict`` gives the batch's masks (B, S, R, A) for the current inputs; ``encode(i, clicks)``
    adds sample ``i``'s new clicks to its inputs.
    """
    import torch

    for k in range(int(rounds.max(initial=0))):
        with torch.no_grad():
            pred = predict()
        for i in np.flatnonzero(rounds > k):
            encode(int(i), next_clicks(pred[i], truth[i], spacing=spacing, rng=rng, policy=policy))


class SWFastEditRecipe(PatchRecipe):
    """SW-FastEdit (seed_spec §5.2): DiceCE (squared, background left out), Adam 1e-4, cosine per epoch.

    Clicks as the original's training loop, but with a drawn number of rounds: each sample gets
    ``U{0..interactions}`` rounds of no-gradient prediction and corrective clicks on its error
    (nfbench's ``click_policy``, default ``edt-power``: random, drawn towards the middle of an
    error), then one training step on the last inputs. The original always runs all of them
    (``max_train_interactions``); a drawn number also trains the answers to the first few clicks. Flips per axis with p = 0.1, 60 % of patches on a lesion.

    ``target="all"`` (the original) segments every lesion of the patch, clicked or not. With
    ``"clicked"`` the target is the lesion under the patch centre alone (nothing on a patch centred
    off the lesions), prompted by a first positive click drawn in it by the click policy before the
    corrective rounds: the lesion-wise task of the lesion scenarios, where a neighbouring lesion
    touching the clicked one, or a bright structure beside it, is background until it is clicked.
    """

    model = "sw-fastedit"
    defaults = {"filters": "32,64,128,256,320,320", "roi_size": "128,128,64", "spacing": "0.625,0.625,7.8"}
    lr = 1e-4
    flip_rate = 0.1

    settings = ("interactions", "click_policy", "target")

    def __init__(self, options: Mapping[str, object], *, interactions: int | None = None,
                 click_policy: str = "edt-power", target: str = "all") -> None:
        super().__init__(options)
        from nfbench.models.sw_fastedit import parse_numbers

        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
        self.target = target
        self.filters = parse_numbers(self.options["filters"], "filters", 6, int)
        self.roi = parse_numbers(self.options["roi_size"], "roi_size", 3, int)
        self.spacing = parse_numbers(self.options["spacing"], "spacing", 3, float)
        self.interactions = 10 if interactions is None else int(interactions)
        self.click_policy = click_policy

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return self.roi  # type: ignore[return-value]

    def build_network(self) -> torch.nn.Module:
        from nfbench.models.sw_fastedit import build_network

        return build_network(self.filters)

    def load_init(self, network: torch.nn.Module, path: Path) -> None:
        from nfbench.models.sw_fastedit import load_weights

        load_weights(network, path)

    def prepare(self, image: Volume, label: Volume) -> tuple:
        from nfbench.models.sw_fastedit import ORIENTATION

        return _grid_arrays(image, label, ORIENTATION, self.spacing)

    def batch(self, patches, network, rng, device):
        import torch

        from nfbench.models.sw_fastedit import BALL_RADIUS

        truth = np.stack([p.centred if self.target == "clicked" else p.truth for p in patches])
        inputs = np.zeros((len(patches), 3, *self.roi), np.float32)
        inputs[:, 0] = np.stack([p.image for p in patches])
        points: list[dict[bool, list]] = [{True: [], False: []} for _ in patches]

        def predict() -> np.ndarray:
            logits = network(torch.from_numpy(inputs).to(device)).float()
            return (logits[:, 1] > logits[:, 0]).cpu().numpy()

        def encode(i: int, clicks: list) -> None:
            for click in clicks:
                points[i][click.positive].append(click.ijk)
            for channel, sign in ((1, True), (2, False)):
                if points[i][sign]:
                    inputs[i, channel] = balls(self.roi, points[i][sign], BALL_RADIUS)

        if self.target == "clicked":
            for i in np.flatnonzero(truth.reshape(len(patches), -1).any(1)):
                encode(int(i), next_clicks(np.zeros_like(truth[i]), truth[i], spacing=self.spacing, rng=rng,
                                           policy=self.click_policy))
        corrective_rounds(predict, encode, truth, rng.integers(0, self.interactions + 1, size=len(patches)),
                          spacing=self.spacing, policy=self.click_policy, rng=rng)
        target = torch.from_numpy(truth[:, None].astype(np.int64)).to(device)
        return (torch.from_numpy(inputs).to(device),), target

    def loss(self, logits, target):
        from monai.losses import DiceCELoss

        return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, include_background=False)(logits, target)

    def optimizer(self, network, lr):
        import torch

        return torch.optim.Adam(network.parameters(), lr=lr)

    def scheduler(self, optimizer, epochs):
        import torch

        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=1e-8)

    def save_weights(self, network, path):
        import torch

        torch.save({"net": network.state_dict()}, path)


class DINsRecipe(PatchRecipe):
    """DINs (seed_spec §5.1): class-weighted cross-entropy (1, 3), Adam 3e-4, plateau schedule.

    Clicks are drawn once per sample, not iteratively, as the original: ``U{1..10}`` positive
    clicks inside the lesions eroded by 3 voxels in-plane (the voxel nearest a lesion's centroid
    when erosion leaves nothing), ``U{0..10}`` negative clicks in the band of 40 in-plane voxels
    around them (random with p = 0.5, else farthest-point), every click at least 10 in-plane
    voxels from the others of its slice; Gaussian guides with σ = ``guide_sigma`` (the original's
    5, 5 and 1 voxels along S, R and A). Flips per axis with
    p = 0.5. Beyond the original, ``interactions`` > 0 adds ``U{0..interactions}`` rounds of
    corrective clicks on top of them, as SW-FastEdit trains (off by default), and
    ``positive_clicks="per-lesion"`` draws each positive click's lesion first (uniformly among the
    patch's lesions), then a voxel of its eroded interior, or the voxel nearest its centroid when
    erosion leaves nothing: the original's pool of eroded voxels of all lesions together leaves
    every lesion thinner than twice the erosion unclicked whenever a larger one shares the patch,
    so the network never learns a click on a small lesion (``original``, the default); and
    ``small_lesion_boost`` = v > 0 weighs the loss of each lesion voxel by √(v / size) more (size in
    voxels of its 26-connected lesion in the patch, at least 1×): in the cross-entropy a lesion of
    one voxel otherwise weighs nothing beside a large one, and the network learned to answer
    background under a click on it (0 by default, the original loss). The original's L2 penalty of
    3e-5 on the convolution kernels is Adam weight decay 6e-5 on them (the gradient of ``λ‖w‖²`` is ``2λw``). ``ReduceLROnPlateau`` on the validation
    loss: factor 0.2, patience 30 epochs as Keras counts them (the rate falls after the 30th epoch in a
    row without improvement), min_delta 1e-4, min_lr 1e-6.
    """

    model = "dins"
    defaults = {"base_filters": 30, "max_filters": 320, "roi": "512,160,10", "spacing": "1.7,1.7,7.8",
                "guide_sigma": "5,5,1"}
    lr = 3e-4
    flip_rate = 0.5
    max_positive = 10
    max_negative = 10
    erosion = 3.0
    band = 40.0
    min_gap = 10.0

    settings = ("interactions", "click_policy", "positive_clicks", "small_lesion_boost")

    def __init__(self, options: Mapping[str, object], *, interactions: int | None = None,
                 click_policy: str = "edt-power", positive_clicks: str = "original",
                 small_lesion_boost: float = 0.0) -> None:
        super().__init__(options)
        from nfbench.models.dins import parse_roi, parse_triple

        if positive_clicks not in POSITIVE_CLICKS:
            raise ValueError(f"positive clicks must be one of {', '.join(POSITIVE_CLICKS)}, got {positive_clicks!r}")
        if small_lesion_boost < 0:
            raise ValueError(f"small lesion boost must be >= 0 voxels, got {small_lesion_boost}")
        self.interactions = 0 if interactions is None else int(interactions)
        self.click_policy, self.positive_clicks = click_policy, positive_clicks
        self.small_lesion_boost = float(small_lesion_boost)

        self.base_filters, self.max_filters = int(self.options["base_filters"]), int(self.options["max_filters"])
        self.roi = parse_roi(self.options["roi"])  # type: ignore[arg-type]
        self.spacing = parse_triple(self.options["spacing"], "spacing")  # type: ignore[arg-type]
        self.guide_sigma = parse_triple(self.options["guide_sigma"], "guide_sigma")  # type: ignore[arg-type]

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return self.roi

    def build_network(self):
        from nfbench.models.dins import build_network

        return build_network(self.base_filters, self.max_filters)

    def load_init(self, network, path):
        """A plain state dict (what ``dins`` loads) or a file holding one under ``net`` (our ``last.pt``)."""
        from nfbench.models.base import ModelError
        from nfbench.models.blocks.checkpoints import load_checkpoint

        try:
            load_checkpoint(network, path, model_name=self.model)
        except ModelError as plain:
            try:
                load_checkpoint(network, path, model_name=self.model, key="net")
            except ModelError:
                raise plain from None

    def prepare(self, image, label):
        from nfbench.models.dins import ORIENTATION

        return _grid_arrays(image, label, ORIENTATION, self.spacing)

    def clicks(self, truth: np.ndarray, rng: np.random.Generator) -> list[tuple[tuple[int, int, int], bool]]:
        """The simulated clicks of one patch ``(S, R, A)``: ``(index, positive)``."""
        in_plane = (1.0, 1.0, 1e6)  # distances within a coronal slice only (A is the last axis)
        chosen: list[tuple[tuple[int, int, int], bool]] = []

        def spaced(candidates: np.ndarray) -> np.ndarray:
            if not chosen or candidates.size == 0:
                return candidates
            points = np.array([c for c, _ in chosen])
            coords = np.array(np.unravel_index(candidates, truth.shape)).T
            same = coords[:, None, 2] == points[None, :, 2]
            far = np.linalg.norm(coords[:, None, :2] - points[None, :, :2], axis=2) >= self.min_gap
            return candidates[np.all(far | ~same, axis=1)]

        def index(flat: int) -> tuple[int, int, int]:
            return tuple(int(v) for v in np.unravel_index(flat, truth.shape))  # type: ignore[return-value]

        if truth.any():
            eroded = ndimage.distance_transform_edt(truth, sampling=in_plane) > self.erosion
            inner = np.flatnonzero(eroded)
            if self.positive_clicks == "per-lesion":
                pools = _lesion_pools(truth, eroded)
                for _ in range(int(rng.integers(1, self.max_positive + 1))):
                    left = [p for p in (spaced(pool) for pool in pools) if p.size]
                    if not left:
                        break
                    pool = left[rng.integers(len(left))]
                    chosen.append((index(int(pool[rng.integers(pool.size)])), True))
            elif inner.size == 0:  # tiny lesions: the voxel nearest each one's centroid
                for pool in _lesion_pools(truth, eroded)[: self.max_positive]:
                    chosen.append((index(int(pool[0])), True))
            else:
                for _ in range(int(rng.integers(1, self.max_positive + 1))):
                    left = spaced(inner)
                    if left.size == 0:
                        break
                    chosen.append((index(int(left[rng.integers(left.size)])), True))
            distance = ndimage.distance_transform_edt(~truth, sampling=in_plane)
            band = np.flatnonzero((distance > 0) & (distance <= self.band))
        else:
            band = np.arange(truth.size)
        farthest = rng.random() >= 0.5
        for _ in range(int(rng.integers(0, self.max_negative + 1))):
            left = spaced(band)
            if left.size == 0:
                break
            negatives = [c for c, positive in chosen if not positive]
            if farthest and negatives:
                coords = np.array(np.unravel_index(left, truth.shape)).T
                gaps = np.min(np.linalg.norm(coords[:, None] - np.array(negatives)[None], axis=2), axis=1)
                pick = int(left[np.argmax(gaps)])
            else:
                pick = int(left[rng.integers(left.size)])
            chosen.append((index(pick), False))
        return chosen

    def batch(self, patches, network, rng, device):
        import torch

        from nfbench.models.dins import add_guide, guide_channels

        images = np.stack([p.image for p in patches])[:, None]  # (B, 1, S, R, A)
        guides = np.stack([guide_channels(self.roi, self.clicks(p.truth, rng), self.guide_sigma) for p in patches])
        truth = np.stack([p.truth for p in patches])

        def to_last(array: np.ndarray) -> torch.Tensor:  # (B, C, S, R, A) → (B, A, S, R, C)
            return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 4, 2, 3, 1))).to(device)

        image = to_last(images)

        def predict() -> np.ndarray:
            logits = network(image, to_last(guides)).float()  # (B, A, S, R, 2)
            return (logits[..., 1] > logits[..., 0]).permute(0, 2, 3, 1).cpu().numpy()

        def encode(i: int, clicks: list) -> None:
            for click in clicks:
                add_guide(guides[i], click.ijk, click.positive, self.guide_sigma)

        if self.interactions:  # drawn only when asked: the original recipe's random stream stays as it was
            corrective_rounds(predict, encode, truth, rng.integers(0, self.interactions + 1, size=len(patches)),
                              spacing=self.spacing, policy=self.click_policy, rng=rng)
        target = np.ascontiguousarray(truth.transpose(0, 3, 1, 2)).astype(np.int64)  # (B, A, S, R)
        return (image, to_last(guides)), torch.from_numpy(target).to(device)

    def loss(self, logits, target):
        import torch
        from torch.nn import functional as F

        weights = (1.0 + 2.0 * target).float()  # class weights (1, 3)
        if self.small_lesion_boost > 0:
            weights = weights * torch.from_numpy(_size_boost(target.cpu().numpy(), self.small_lesion_boost)).to(weights.device)
        voxel = F.cross_entropy(logits.float().movedim(-1, 1), target, reduction="none")
        return ((voxel * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)).mean()

    def optimizer(self, network, lr):
        import torch

        kernels = [p for n, p in network.named_parameters() if p.ndim > 1]
        others = [p for n, p in network.named_parameters() if p.ndim <= 1]
        return torch.optim.Adam([{"params": kernels, "weight_decay": 6e-5}, {"params": others, "weight_decay": 0.0}],
                                lr=lr, betas=(0.9, 0.99), eps=1e-8)

    def scheduler(self, optimizer, epochs):
        import torch

        # Keras cuts the rate once `patience` epochs in a row fail to improve, PyTorch after
        # `patience` + 1: the original's 30 is PyTorch's 29.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.2, patience=29, threshold=1e-4,
                                                          threshold_mode="abs", min_lr=1e-6)

    def step_scheduler(self, scheduler, val_loss):
        scheduler.step(val_loss)

    def save_weights(self, network, path):
        import torch

        torch.save(network.state_dict(), path)


RECIPES: dict[str, type[Recipe]] = {"sw-fastedit": SWFastEditRecipe, "dins": DINsRecipe}
"""Trainable models by name."""

from nfbench.train.sam2_recipe import SAM2Recipe  # noqa: E402 - it builds on Recipe above
from nfbench.train.simpleclick_recipe import SimpleClickRecipe  # noqa: E402 - it builds on Recipe above
from nfbench.train.stcn_recipe import STCNRecipe  # noqa: E402 - it builds on Recipe above

RECIPES["sam2"] = SAM2Recipe
RECIPES["stcn"] = STCNRecipe
RECIPES["simpleclick"] = SimpleClickRecipe


def _size_boost(target: np.ndarray, reference: float) -> np.ndarray:
    """Per voxel of each sample of ``target`` (B, ...): √(reference / size) of its lesion (26-connected), at least 1; 1 on background."""
    import cc3d

    boost = np.ones(target.shape, np.float32)
    for i, sample in enumerate(target):
        labels = cc3d.connected_components(sample.astype(np.uint8), connectivity=26)
        sizes = np.bincount(labels.ravel()).astype(np.float32)
        factor = np.maximum(1.0, np.sqrt(reference / np.maximum(sizes, 1.0)))
        factor[0] = 1.0
        boost[i] = factor[labels]
    return boost


def _lesion_pools(truth: np.ndarray, eroded: np.ndarray) -> list[np.ndarray]:
    """Per lesion (a face-connected component of ``truth``): the flat indices of its ``eroded`` voxels, or,
    when erosion leaves none, of its voxel nearest its centroid alone."""
    labels, _ = ndimage.label(truth)
    pools = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        lesion = labels[box] == k
        inner = lesion & eroded[box]
        if inner.any():
            local = np.argwhere(inner)
        else:
            voxels = np.argwhere(lesion)
            local = voxels[[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]]
        pools.append(np.ravel_multi_index(tuple((local + [s.start for s in box]).T), truth.shape))
    return pools


def recipe_for(model: str, options: Mapping[str, object], **settings: object) -> Recipe:
    """The recipe of a trainable model, its options checked."""
    if model not in RECIPES:
        raise ValueError(f"nfbench cannot train {model!r}; trainable models: {', '.join(RECIPES)}")
    recipe = RECIPES[model]
    return recipe(options, **{k: v for k, v in settings.items() if k in recipe.settings})

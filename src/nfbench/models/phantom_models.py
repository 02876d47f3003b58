"""`sw-fastedit-phantom`, `dins-phantom`, `simpleclick-stcn-phantom`: models trained by nfbench on its phantom.

They run out of the box: the weights ship in the package (``nfbench/models/weights``), each beside
its model card (``<name>.card.json``: the ``nfbench train`` command, data, fold, seed, epochs,
validation figures, the file's SHA-256). The card's options fix the network and its grid (a
reduced width, the small phantom's 2.5 × 2.5 × 7.8 mm grid, a small window), so only options that
leave the weights' meaning intact can be changed here.

``keep_clicked`` is on by default: trained as the originals were, on every lesion of a patch, the
networks mark every lesion-like structure of a scan, and in a lesion-wise scenario the answer is
meant to be the clicked lesion only (without it the lesion Dice after one click fell from 0.99 to
0.73 in the feasibility run of issue 9). ``honour_clicks`` is on by default too: a positive
click's voxel is lesion in the answer, so a lesion the network calls background under the click (a
dim one, one of a voxel) is not left empty however often it is clicked (``dins-phantom`` on the
low-burden unseen phantom set: lesion Dice after 3 clicks 0.760 without, 0.822 with;
``sw-fastedit-phantom`` within 0.001). The models with the original weights keep both off.

These models know only the phantom: they were trained on one phantom version (``PHANTOM_VERSION``
and difficulty in the card) and do not transfer to another one or to real scans; retrain with
``nfbench train`` when the phantom changes.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from nfbench.models.base import ModelError
from nfbench.models.dins import GUIDE_SIGMA, DINsModel
from nfbench.models.registry import missing_modules
from nfbench.models.simpleclick_stcn import SimpleClickSTCNModel
from nfbench.models.sw_fastedit import SWFastEditModel

__all__ = ["DINsPhantomModel", "SWFastEditPhantomModel", "SimpleClickSTCNPhantomModel", "card", "weights_file"]


def weights_file(name: str) -> Path:
    """The packaged weights of a phantom model."""
    return Path(str(files("nfbench.models") / "weights" / f"{name}.pt"))


def card(name: str) -> dict:
    """The model card of a phantom model (what trained it, with which figures)."""
    path = weights_file(name).with_suffix(".card.json")
    if not path.is_file():
        raise ModelError(f"model {name!r}: its model card {str(path)!r} is missing from the installation")
    return json.loads(path.read_text())


def _missing(name: str, *modules: str) -> list[str]:
    path = weights_file(name)
    return missing_modules(*modules, extra="torch") + ([] if path.is_file() else [f"packaged weights {path} missing"])


class SWFastEditPhantomModel(SWFastEditModel):
    """SW-FastEdit trained on the realistic phantom by ``nfbench train`` (shipped weights, reduced width)."""

    name = "sw-fastedit-phantom"
    needs_weights = False
    description = "SW-FastEdit trained by nfbench on its realistic phantom (shipped weights; phantom only)"

    def __init__(self, *, overlap: float = 0.25, sw_batch_size: int = 4, keep_clicked: bool = True,
                 threads: int = 0, device: str = "cpu", honour_clicks: bool = True) -> None:
        options = card(self.name)["options"]
        super().__init__(weights_file(self.name), filters=options["filters"], roi_size=options["roi_size"],
                         spacing=options["spacing"], overlap=overlap, sw_batch_size=sw_batch_size,
                         keep_clicked=keep_clicked, threads=threads, device=device, honour_clicks=honour_clicks)

    @classmethod
    def requirements(cls) -> list[str]:
        return _missing(cls.name, "torch", "monai")


class DINsPhantomModel(DINsModel):
    """DINs trained on the realistic phantom by ``nfbench train`` (shipped weights, reduced width)."""

    name = "dins-phantom"
    needs_weights = False
    description = "DINs trained by nfbench on its realistic phantom (shipped weights; phantom only)"

    def __init__(self, *, overlap: float = 0.25, sw_batch_size: int = 4, keep_clicked: bool = True,
                 threads: int = 0, device: str = "cpu", honour_clicks: bool = True) -> None:
        options = card(self.name)["options"]
        super().__init__(weights_file(self.name), device=device, base_filters=int(options["base_filters"]),
                         max_filters=int(options["max_filters"]), roi=options["roi"], spacing=options["spacing"],
                         guide_sigma=options.get("guide_sigma", GUIDE_SIGMA), overlap=overlap, sw_batch_size=sw_batch_size, keep_clicked=keep_clicked, threads=threads, honour_clicks=honour_clicks)

    @classmethod
    def requirements(cls) -> list[str]:
        return _missing(cls.name, "torch")


class SimpleClickSTCNPhantomModel(SimpleClickSTCNModel):
    """SimpleClick and STCN, each trained on the realistic phantom's coronal slices by ``nfbench train``
    (two shipped weight files, ``simpleclick-phantom`` and ``stcn-phantom``, reduced width; SimpleClick's
    sizes and crop are in its checkpoint, STCN's configuration in its card)."""

    name = "simpleclick-stcn-phantom"
    needs_weights = False
    description = "SimpleClick + STCN trained by nfbench on its realistic phantom (shipped weights; phantom only)"
    parts = ("simpleclick-phantom", "stcn-phantom")

    def __init__(self, *, threshold: float = 0.5, top_k: int = 20, max_side: int = 1024, threads: int = 0,
                 device: str = "cpu") -> None:
        self._load(*(weights_file(part) for part in self.parts), stcn_config=card("stcn-phantom")["options"]["stcn_config"],
                   threshold=threshold, top_k=top_k, max_side=max_side, threads=threads, device=device)

    @classmethod
    def requirements(cls) -> list[str]:
        return missing_modules("torch", "torchvision", extra="torch") + [
            f"packaged weights {weights_file(part)} missing" for part in cls.parts if not weights_file(part).is_file()]

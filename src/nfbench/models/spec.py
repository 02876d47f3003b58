"""Model specs: a model asked for by name, weights, options and device, part of a run's identity.

``nfbench evaluate --model NAME --weights PATH --model-option KEY=VALUE --device cuda`` and
``ModelSpec("sphere", options={"radius_mm": 4})`` say the same. The options are checked against the
model's constructor before anything runs (:func:`nfbench.models.registry.load_spec`), and a run's
``config.json`` records each spec with the SHA-256 and size of its weights, so resuming a run with
other weights or options is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelSpec", "DEVICES", "parse_option", "resolve_device", "file_identity"]

DEVICES = ("auto", "cpu", "cuda")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """A model as requested: registry name, optional weights file or folder, options, device."""

    name: str
    weights: Path | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a model spec needs a model name")
        if self.device not in DEVICES:
            raise ValueError(f"model {self.name!r}: unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        object.__setattr__(self, "options", dict(self.options))
        if self.weights is not None:
            object.__setattr__(self, "weights", Path(self.weights))

    def record(self) -> dict:
        """What ``config.json`` keeps of the spec: a changed weights file changes the record."""
        return {
            "name": self.name,
            "weights": None if self.weights is None else str(self.weights.resolve()),
            "weights_identity": None if self.weights is None else file_identity(self.weights),
            "options": {k: self.options[k] for k in sorted(self.options)},
            "device": self.device,
        }


def parse_option(text: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` → ``(KEY, VALUE)``; the model converts the value to its option's type."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"a model option must look like KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when torch is installed and sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def file_identity(path: Path) -> dict:
    """SHA-256 and size of a weights file; of every file, in sorted order, for a weights folder."""
    path = Path(path)
    if not path.exists():
        return {"sha256": None, "size": None}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest, size = hashlib.sha256(), 0
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}

"""Model registry: entry points in the group ``nfbench.models`` plus models registered in-process.

A model class (or factory) may define

- ``description`` (str), ``capabilities`` (frozenset), ``needs_weights`` (bool: False for
  weight-free baselines), and
- ``requirements(**options) -> list[str]``: what is missing to load it (a module that does not
  import, a weight file that is absent), checked without loading anything heavy.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from nfbench.models.base import InteractiveModel, ModelError

__all__ = ["ModelInfo", "available_models", "load_model", "register_model", "unregister_model", "GROUP"]

GROUP = "nfbench.models"
_REGISTERED: dict[str, Callable[..., InteractiveModel]] = {}


@dataclass(frozen=True)
class ModelInfo:
    """What `nfbench models` shows for one model."""

    name: str
    target: str
    available: bool
    missing: tuple[str, ...]
    capabilities: frozenset[str]
    description: str
    needs_weights: bool


def register_model(name: str, factory: Callable[..., InteractiveModel]) -> None:
    """Add a model in this process (notebooks, tests); it shadows an entry point of the same name."""
    _REGISTERED[name] = factory


def unregister_model(name: str) -> None:
    _REGISTERED.pop(name, None)


def _targets() -> dict[str, object]:
    found: dict[str, object] = {ep.name: ep for ep in entry_points(group=GROUP)}
    found.update(_REGISTERED)
    return dict(sorted(found.items()))


def _describe(name: str, target: object) -> tuple[ModelInfo, Callable[..., InteractiveModel] | None]:
    label = getattr(target, "value", None) or f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"
    try:
        factory = target.load() if hasattr(target, "load") else target
    except Exception as err:  # noqa: BLE001 - a broken plug-in must not break the listing
        return ModelInfo(name, label, False, (f"cannot import {label}: {type(err).__name__}: {err}",), frozenset(), "", True), None
    check = getattr(factory, "requirements", None)
    try:
        missing = tuple(check()) if callable(check) else ()
    except Exception as err:  # noqa: BLE001
        missing = (f"requirement check failed: {err}",)
    doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
    info = ModelInfo(
        name=name,
        target=label,
        available=not missing,
        missing=missing,
        capabilities=frozenset(getattr(factory, "capabilities", frozenset())),
        description=getattr(factory, "description", None) or (doc[0] if doc else ""),
        needs_weights=bool(getattr(factory, "needs_weights", True)),
    )
    return info, factory


def available_models() -> list[ModelInfo]:
    """Every registered model, with whether it can be loaded here and what is missing if not."""
    return [_describe(name, target)[0] for name, target in _targets().items()]


def load_model(name: str, **options: object) -> InteractiveModel:
    """Load a registered model by name; options go to its constructor.

    Raises
    ------
    ModelError
        Unknown name (with the closest known names) or missing dependencies/weights.
    """
    targets = _targets()
    if name not in targets:
        close = difflib.get_close_matches(name, list(targets), n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}.{hint} Registered: {', '.join(targets) or 'none'} (see `nfbench models`)")
    info, factory = _describe(name, targets[name])
    if factory is None or not info.available:
        raise ModelError(f"model {name!r} is not available: {'; '.join(info.missing)}")
    model = factory(**options)
    if not isinstance(model, InteractiveModel):
        raise ModelError(f"model {name!r} ({info.target}) does not provide name, capabilities and start()")
    return model

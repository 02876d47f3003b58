"""Model registry: entry points in the group ``nfbench.models`` plus models registered in-process.

A third-party package adds a model without touching nfbench by declaring, in its pyproject::

    [project.entry-points."nfbench.models"]
    my-model = "my_package.nfbench_model:MyModel"

The target is a class (or any factory) called with the keyword options given to
:func:`load_model` (e.g. ``weights=Path(...)``). It may define, as class attributes:

- ``description`` (str), ``capabilities`` (frozenset), ``needs_weights`` (bool: False for
  weight-free baselines, which ``nfbench demo`` picks); ``package`` (str): the distribution whose
  version the results record as the model's (default: the one that defines the class; a wrapper
  names what it wraps, e.g. ``sam2``);
- ``requirements(**options) -> list[str]`` (a classmethod): what is missing to load it, one
  sentence each (a module that does not import, a weight file that is absent), found without
  importing anything heavy; :func:`missing_modules` and :func:`missing_file` write those sentences.
  It receives the options of :func:`load_model` that it names (all of them if it takes
  ``**options``) and none when models are listed.

The module an entry point names is imported when models are listed, so it must import its heavy
dependencies (torch, sam2, ...) inside ``start`` or ``__init__``, not at the top.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from nfbench.models.base import CAPABILITIES, InteractiveModel, ModelError
from nfbench.models.spec import ModelSpec, resolve_device

__all__ = [
    "ModelInfo", "available_models", "card_mismatches", "check_spec", "load_model", "load_spec", "model_options", "register_model",
    "registered_names", "unregister_model", "missing_modules", "missing_file", "GROUP",
]

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


def missing_modules(*modules: str, extra: str | None = None) -> list[str]:
    """One sentence per module that cannot be imported here, with how to install it.

    Uses :func:`importlib.util.find_spec`, which finds a module without importing it (no torch
    start-up just to list models). ``extra`` names the optional-dependency group of nfbench that
    installs them, e.g. ``extra="sam2"`` → ``pip install "nfbench[sam2]"``.
    """
    hint = f'pip install "nfbench[{extra}]"' if extra else None
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            found = False
        if not found:
            top = module.split(".")[0]
            missing.append(f"Python module {module!r} is not installed ({hint or f'pip install {top}'})")
    return missing


def missing_file(path: str | Path | None, *, option: str = "weights", what: str = "weight file") -> list[str]:
    """One sentence when a required file was not given or does not exist, naming the option to pass."""
    if path is None:
        cli = "--weights PATH" if option == "weights" else f"-o {option}=PATH"
        return [f"no {what} given ({cli} on the command line, {option}=PATH when loading the model in Python)"]
    if Path(path).is_dir():
        return [f"{what} {str(path)!r} is a folder, not a file"]
    if not Path(path).is_file():
        return [f"{what} {str(path)!r} does not exist"]
    return []


def register_model(name: str, factory: Callable[..., InteractiveModel]) -> None:
    """Add a model in this process (notebooks, tests); it shadows an entry point of the same name."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    if not callable(factory) and not hasattr(factory, "load"):
        raise TypeError(f"model {name!r}: the factory must be callable, got {type(factory).__name__}")
    _REGISTERED[name] = factory


def unregister_model(name: str) -> None:
    """Forget a model registered with :func:`register_model` (entry points stay)."""
    _REGISTERED.pop(name, None)


def _targets() -> dict[str, object]:
    found: dict[str, object] = {ep.name: ep for ep in entry_points(group=GROUP)}
    found.update(_REGISTERED)
    return dict(sorted(found.items()))


def _requirement_options(check: Callable[..., object], options: Mapping[str, object]) -> dict[str, object]:
    """The options a ``requirements`` callable accepts: all with ``**options``, else those it names."""
    try:
        parameters = inspect.signature(check).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(options)
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in options.items() if k in names}


def _describe(
    name: str, target: object, options: Mapping[str, object] | None = None
) -> tuple[ModelInfo, Callable[..., InteractiveModel] | None]:
    label = getattr(target, "value", None) or f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"
    try:
        factory = target.load() if hasattr(target, "load") else target
    except Exception as err:  # noqa: BLE001 - a broken plug-in must not break the listing
        return ModelInfo(name, label, False, (f"cannot import {label}: {type(err).__name__}: {err}",), frozenset(), "", True), None
    check = getattr(factory, "requirements", None)
    try:
        missing = tuple(str(m) for m in check(**_requirement_options(check, options or {}))) if callable(check) else ()
    except Exception as err:  # noqa: BLE001 - a failing check makes the model unavailable, not the listing
        missing = (f"requirement check failed: {type(err).__name__}: {err}",)
    missing += _contract_problems(factory)
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


def _capability_problem(caps: frozenset[str]) -> str | None:
    """Why declared capabilities are refused; ``prev_mask`` is named because DESIGN's example has it."""
    if caps and caps <= CAPABILITIES:
        return None
    note = " (a session keeps its own previous mask: prev_mask is not a capability)" if "prev_mask" in caps else ""
    return f"declares capabilities {sorted(caps)}; it must take some of {sorted(CAPABILITIES)} and nothing else{note}"


def _contract_problems(factory: object) -> tuple[str, ...]:
    """What a model class visibly lacks, so `nfbench models` does not list it as available; a factory
    that is not a class is checked only when it is loaded."""
    if not inspect.isclass(factory):
        return ()
    problems = [] if callable(getattr(factory, "start", None)) else ["it defines no start(image, *, seed) method"]
    caps = getattr(factory, "capabilities", None)
    if isinstance(caps, (set, frozenset, list, tuple)):  # a property or an instance attribute waits for load
        problem = _capability_problem(frozenset(caps))
        if problem:
            problems.append(problem)
    return tuple(problems)


def registered_names() -> list[str]:
    """The registered models' names, sorted; nothing is imported (a report's fixed colour order)."""
    return list(_targets())


def available_models() -> list[ModelInfo]:
    """Every registered model, with whether it can be loaded here and what is missing if not."""
    return [_describe(name, target)[0] for name, target in _targets().items()]


def _factory(name: str) -> tuple[ModelInfo, Callable[..., InteractiveModel] | None, object]:
    targets = _targets()
    if name not in targets:
        close = difflib.get_close_matches(name, list(targets), n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}.{hint} Registered: {', '.join(targets) or 'none'} (see `nfbench models`)")
    info, factory = _describe(name, targets[name])
    return info, factory, targets[name]


def model_options(factory: Callable[..., object]) -> dict[str, inspect.Parameter]:
    """The keyword options a model's constructor takes (``weights`` and ``device`` included)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {n: p for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


_CONVERTERS: dict[str, Callable[[str], object]] = {"int": int, "float": float, "str": str, "Path": Path}


def _option_kind(option: inspect.Parameter) -> tuple[str, bool]:
    """The type name of an option's values (from its default, else its annotation, by whole words:
    "int" is also in ``Literal["point"]``) and whether it takes a tuple of them."""
    default, annotation = option.default, str(option.annotation)
    sequence = isinstance(default, tuple) or re.match(r"(typing\.)?[Tt]uple\[", annotation) is not None
    if isinstance(default, tuple) and default:
        return type(default[0]).__name__, True
    if default is not inspect.Parameter.empty and default is not None and not sequence:
        return type(default).__name__, False
    return next((k for k in ("int", "float", "Path") if re.search(rf"\b{k}\b", annotation)), "str"), sequence


def _convert(model: str, option: inspect.Parameter, value: object) -> object:
    """A CLI string to the option's type, read from its default or its annotation."""
    if not isinstance(value, str):
        return value
    default = option.default
    if isinstance(default, bool) or re.search(r"\bbool\b", str(option.annotation)):
        if value.lower() in ("true", "1", "yes", "on"):
            return True
        if value.lower() in ("false", "0", "no", "off"):
            return False
        raise ModelError(f"model {model!r}: option {option.name!r} takes true or false, got {value!r}")
    kind, sequence = _option_kind(option)
    convert = _CONVERTERS.get(kind)
    if convert is None:
        return value
    try:
        return tuple(convert(v) for v in value.split(",")) if sequence else convert(value)
    except ValueError:
        what = f"comma-separated list of {kind}" if sequence else kind
        raise ModelError(f"model {model!r}: option {option.name!r} takes a {what}, got {value!r}") from None


def card_mismatches(spec: ModelSpec) -> list[str]:
    """The options of ``spec`` that differ from those its weights were trained with, as the model
    card beside them records them (``card.json`` of `nfbench train`, or ``NAME.card.json``):
    another window, grid spacing or guide runs without an error and gives other numbers."""
    if spec.weights is None:
        return []
    weights = Path(spec.weights)
    card = next((c for c in (weights.parent / "card.json", weights.with_suffix(".card.json")) if c.is_file()), None)
    try:
        record = json.loads(card.read_text()) if card else {}
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict) or (record.get("weights") or {}).get("file") != weights.name:
        return []
    factory = _factory(spec.name)[1]
    accepted = {} if factory is None else model_options(factory)
    notes = []
    for key, trained in sorted((record.get("options") or {}).items()):
        if key not in accepted or key in ("weights", "device"):
            continue
        given = spec.options.get(key, accepted[key].default)
        try:
            same = _convert(spec.name, accepted[key], trained) == _convert(spec.name, accepted[key], given)
        except ModelError:
            continue
        if not same:
            shown = f"-o {key}={given}" if key in spec.options else f"{key} left at its default {given}"
            notes.append(f"model {spec.name!r}: {shown}, but {weights.name} was trained with {key}={trained} "
                         f"({card}); give -o {key}={trained} unless the difference is meant")
    return notes


def check_spec(spec: ModelSpec) -> ModelInfo:
    """Check a spec without loading the model: its options and what is missing (dependencies, the
    weight file); returns the model's description (capabilities included).

    Raises :class:`ModelError` as :func:`load_spec` would, before any weights are read.
    """
    kwargs = _spec_kwargs(spec)
    _, _, target = _factory(spec.name)
    info, _ = _describe(spec.name, target, kwargs)
    if not info.available:
        raise ModelError(f"model {spec.name!r} is not available: {'; '.join(info.missing)}")
    return info


def load_spec(spec: ModelSpec) -> InteractiveModel:
    """Load a model from its spec, every option checked against the model's constructor first.

    Raises
    ------
    ModelError
        Naming the model and the option: an unknown option (with the close ones and the list),
        a value of the wrong type or refused by the model, weights given to a weight-free model,
        a GPU asked of a CPU-only model, a missing dependency or weight file.
    """
    kwargs = _spec_kwargs(spec)
    try:
        return load_model(spec.name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ModelError(f"model {spec.name!r}: {err}") from err


def _spec_kwargs(spec: ModelSpec) -> dict[str, object]:
    """The constructor's keyword arguments for ``spec``, each option checked and converted."""
    info, factory, _ = _factory(spec.name)
    if factory is None:
        raise ModelError(f"model {spec.name!r} is not available: {'; '.join(info.missing)}")
    accepted = model_options(factory)
    public = [n for n in accepted if n not in ("weights", "device")]
    kwargs: dict[str, object] = {}
    for key, value in spec.options.items():
        if key in ("weights", "device") or key not in accepted:
            close = difflib.get_close_matches(key, public, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = f"its options: {', '.join(public)}" if public else "it takes no options"
            raise ModelError(f"model {spec.name!r} has no option {key!r}.{hint} ({known})")
        kwargs[key] = _convert(spec.name, accepted[key], value)
    if spec.weights is not None:
        if "weights" not in accepted:
            raise ModelError(f"model {spec.name!r} takes no weights (it is weight-free)")
        kwargs["weights"] = spec.weights
    device = resolve_device(spec.device) if "device" in accepted or spec.device == "cuda" else "cpu"
    if "device" in accepted:
        kwargs["device"] = device
    elif device != "cpu":
        raise ModelError(f"model {spec.name!r} runs on the CPU only; it has no device option")
    return kwargs


def load_model(name: str, **options: object) -> InteractiveModel:
    """Load a registered model by name; options go to its constructor.

    Raises
    ------
    ModelError
        Unknown name (with the closest known names) or missing dependencies/weights.
    """
    _, _, target = _factory(name)
    info, factory = _describe(name, target, options)
    if factory is None or not info.available:
        raise ModelError(f"model {name!r} is not available: {'; '.join(info.missing)}")
    model = factory(**options)
    if not isinstance(model, InteractiveModel):
        raise ModelError(f"model {name!r} ({info.target}) does not provide name, capabilities and start()")
    problem = _capability_problem(frozenset(model.capabilities))
    if problem:
        raise ModelError(f"model {name!r} {problem}")
    return model

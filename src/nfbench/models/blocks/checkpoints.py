"""Strict checkpoint loading for learned models: CPU map location, ``weights_only``, every key checked.

A checkpoint that does not fit the network exactly is refused with one
:class:`~nfbench.models.base.ModelError` naming the model and the file and listing the missing
keys, the unexpected keys and the shape mismatches, instead of torch's first error or, with
``strict=False``, a network that silently keeps random weights. torch is imported when a file is
read, so a model module that imports this one stays cheap to list.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nfbench.models.base import ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["read_checkpoint", "read_state_dict", "load_checkpoint", "state_dict_problems"]

_SHOWN = 8


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" … and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


class _StandIn:
    """An inert object in place of a class or function of another code base that a checkpoint pickled
    beside its weights (a training configuration): built and filled with its state, never run."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args

    def __setstate__(self, state: object) -> None:
        self.__dict__["state"] = state


def _stand_ins(path: Path, prefixes: Sequence[str]) -> list[tuple[type, str]]:
    """Stand-in classes for the globals of ``path`` under ``prefixes`` (listed without unpickling anything)."""
    if not prefixes:
        return []
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the load below names the problem
        return []
    return [(type(name.rsplit(".", 1)[-1], (_StandIn,), {}), name) for name in names
            if name.startswith(tuple(prefixes))]


def read_checkpoint(path: str | Path, *, model_name: str, stand_in: Sequence[str] = ()) -> Any:
    """Everything in a checkpoint file, loaded on the CPU with ``weights_only=True``.

    ``stand_in`` lists module prefixes (``"isegm."``) whose classes and functions the file may hold
    beside the weights (a pickled training configuration): they are unpickled as inert stand-ins
    instead of refusing the file; no code of theirs is imported or run.
    """
    import torch

    path = Path(path)
    where = f"model {model_name!r}: weight file {str(path)!r}"
    if not path.exists():
        raise ModelError(f"{where} does not exist")
    if not path.is_file():
        raise ModelError(f"{where} is not a file")
    try:
        with torch.serialization.safe_globals(_stand_ins(path, stand_in)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if refused:
            raise ModelError(f"{where} holds objects other than tensors and plain containers ({refused[1]}), "
                             "which a weights_only load refuses") from err
        raise ModelError(f"{where} cannot be read: corrupt or not a torch checkpoint (unpickling failed)") from err
    except Exception as err:  # noqa: BLE001 - torch raises many types for a truncated or foreign file
        raise ModelError(f"{where} cannot be read: corrupt or not a torch checkpoint ({_first_line(err)})") from err


def read_state_dict(
    path: str | Path, *, model_name: str, key: str | Sequence[str] | None = None, strip_prefix: str | None = None,
    stand_in: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (:func:`read_checkpoint`, which ``stand_in`` goes to).

    ``key`` picks the state dict inside a checkpoint that holds more (``"state_dict"``,
    ``"model"``, or a path of nested keys such as ``("network", "weights")``); ``strip_prefix`` is
    removed from the names that start with it (``"module."`` of a DataParallel checkpoint).
    """
    import torch

    loaded = read_checkpoint(path, model_name=model_name, stand_in=stand_in)
    where = f"model {model_name!r}: weight file {str(path)!r}"
    path_keys = () if key is None else (key,) if isinstance(key, str) else tuple(key)
    for depth, name in enumerate(path_keys):
        if not isinstance(loaded, Mapping) or name not in loaded:
            inside = f"[{']['.join(repr(k) for k in path_keys[:depth])}]" if depth else ""
            entries = _listed([str(k) for k in loaded]) if isinstance(loaded, Mapping) else type(loaded).__name__
            raise ModelError(f"{where} has no entry {name!r}{' in ' + inside if inside else ''} (it holds: {entries})")
        loaded = loaded[name]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        nested = [str(k) for k, v in loaded.items() if isinstance(v, Mapping)] if isinstance(loaded, Mapping) else []
        hint = f"; the state dict may be under one of: {_listed(nested)}" if nested else ""
        raise ModelError(f"{where} is not a state dict (a mapping of names to tensors){hint}")
    state = {str(k): v for k, v in loaded.items()}
    if strip_prefix:
        state = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    return state


def state_dict_problems(state: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """What keeps ``state`` from loading strictly into a network whose state dict is ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, network {tuple(expected[k].shape)})"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
        prefixes = {u[: len(u) - len(m)] for u in unexpected for m in missing if u.endswith("." + m)}
        if len(prefixes) == 1 and (prefix := prefixes.pop()):
            problems[-1] += f" (names start with {prefix!r}: strip that prefix)"
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listed(mismatched)}")
    return problems


def load_checkpoint(
    module: torch.nn.Module,
    path: str | Path,
    *,
    model_name: str,
    key: str | Sequence[str] | None = None,
    or_key: str | None | bool = False,
    strip_prefix: str | None = None,
    network: str = "the network",
    stand_in: Sequence[str] = (),
) -> None:
    """Load a checkpoint into ``module`` strictly (see :func:`read_state_dict` for ``key`` and ``strip_prefix``).

    ``or_key`` is where else the state dict may be when the file cannot be read at ``key`` (``None``:
    the whole file; ``False``: nowhere else): a model that takes two formats tries both, and the error
    named is the first format's. ``network`` names the architecture in the error (with its widths);
    ``stand_in`` as :func:`read_state_dict`.

    Raises
    ------
    ModelError
        The file is missing, unreadable or unsafe, or its keys or shapes differ from the network's:
        the message names the model and the file and lists every difference.
    """
    try:
        state = read_state_dict(path, model_name=model_name, key=key, strip_prefix=strip_prefix, stand_in=stand_in)
    except ModelError as first:
        if or_key is False:
            raise
        try:
            state = read_state_dict(path, model_name=model_name, key=or_key, strip_prefix=strip_prefix,  # type: ignore[arg-type]
                                    stand_in=stand_in)
        except ModelError:
            raise first from None
    problems = state_dict_problems(state, module.state_dict())
    if problems:
        where = f"model {model_name!r}: weight file {str(path)!r}"
        raise ModelError(f"{where} does not fit {network}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)

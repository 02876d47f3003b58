"""The four evaluation scenarios and the presets that fix their budgets (DESIGN §2)."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, replace

__all__ = ["SCENARIOS", "PRESETS", "Scenario", "scenario_from_options", "look_up"]

SCENARIOS = ("lesion-corrective", "lesion-single", "global-corrective", "global-single")
PRESETS = ("default", "paper")


def look_up(value: str, options: tuple[str, ...], what: str) -> str:
    """Return ``value`` if it is one of ``options``, else raise with a "did you mean"."""
    if value in options:
        return value
    close = difflib.get_close_matches(value, options, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {what} {value!r}.{hint} Available: {', '.join(options)}")


@dataclass(frozen=True)
class Scenario:
    """One scenario with every setting resolved.

    ``interactions`` is the budget per lesion in lesion scenarios and per scan in global ones;
    ``stop_dice`` stops a session early once its Dice reaches it (None: never); ``boxes`` gives a
    box-capable model a 2D box on the lesion's largest coronal slice before the first click (lesion
    scenarios only).
    """

    name: str
    lesions: int = 20
    interactions: int = 3
    stop_dice: float | None = None
    click_policy: str = "center"
    alpha: float = 8.0
    boxes: bool = False

    @property
    def per_lesion(self) -> bool:
        return self.name.startswith("lesion-")

    @property
    def corrective(self) -> bool:
        return self.name.endswith("-corrective")

    @property
    def budget(self) -> int:
        """Interactions per session: one click per lesion in the single-click scenarios."""
        if self.name == "lesion-single":
            return 1
        if self.name == "global-single":
            return self.lesions
        return self.interactions

    def as_dict(self) -> dict:
        return asdict(self)


def _preset(name: str, preset: str) -> Scenario:
    policy = "patch" if preset == "paper" else "center"
    if name == "lesion-corrective":
        return Scenario(name, lesions=20, interactions=3, stop_dice=1.0, click_policy=policy)
    if name == "global-corrective":
        return Scenario(name, lesions=20, interactions=60, stop_dice=0.8, click_policy=policy)
    return Scenario(name, lesions=20, interactions=1, stop_dice=None, click_policy="center")


def scenario_from_options(
    name: str,
    *,
    preset: str = "default",
    lesions: int | None = None,
    interactions: int | None = None,
    stop_dice: float | None | str = "preset",
    click_policy: str | None = None,
    alpha: float | None = None,
    boxes: bool = False,
) -> Scenario:
    """Resolve a scenario from a preset and the user's overrides (None = keep the preset's value).

    ``stop_dice="preset"`` keeps the preset's target; ``None`` disables early stopping.
    """
    name = look_up(name, SCENARIOS, "scenario")
    scenario = _preset(name, look_up(preset, PRESETS, "preset"))
    changes: dict = {"boxes": boxes}
    if lesions is not None:
        if lesions < 1:
            raise ValueError(f"--lesions must be at least 1, got {lesions}")
        changes["lesions"] = lesions
    if interactions is not None:
        if interactions < 1:
            raise ValueError(f"--interactions must be at least 1, got {interactions}")
        changes["interactions"] = interactions
    if stop_dice != "preset":
        if stop_dice is not None and not 0.0 < float(stop_dice) <= 1.0:
            raise ValueError(f"--stop-dice must be in (0, 1] or 'none', got {stop_dice}")
        changes["stop_dice"] = None if stop_dice is None else float(stop_dice)
    if click_policy is not None:
        changes["click_policy"] = click_policy
    if alpha is not None:
        changes["alpha"] = alpha
    return replace(scenario, **changes)

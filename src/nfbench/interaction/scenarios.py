"""The four evaluation scenarios and the presets that fix their budgets (DESIGN §2)."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, replace

from nfbench.interaction.policies import POLICIES

__all__ = ["SCENARIOS", "PRESETS", "Scenario", "scenario_from_options", "look_up"]

SCENARIOS = ("lesion-corrective", "lesion-single", "global-corrective", "global-single")
PRESETS = ("default", "paper", "cvpr25")

#: The CVPR 2025 challenge: one box step, then this many corrective clicks.
CVPR25_CLICKS = 5


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

    ``interactions`` is the budget per lesion in lesion scenarios and per scan in
    ``global-corrective``; ``stop_dice`` stops a session early once its Dice reaches it (None:
    never). ``boxes`` gives a box-capable model a 2D box per prompted lesion: with its first click
    (``box_step=False``) or as an interaction of its own before the clicks (``box_step=True``, the
    CVPR 2025 protocol, whose box sits on the lesion's middle slice). ``preset`` names the preset
    the scenario came from; ``cvpr25`` also scores the challenge's gated NSD and AUCs.
    """

    name: str
    lesions: int = 20
    interactions: int = 3
    stop_dice: float | None = None
    click_policy: str = "center"
    alpha: float = 8.0
    boxes: bool = False
    box_step: bool = False
    preset: str = "default"

    @property
    def per_lesion(self) -> bool:
        return self.name.startswith("lesion-")

    @property
    def corrective(self) -> bool:
        return self.name.endswith("-corrective")

    @property
    def budget(self) -> int:
        """Interactions per session: the length of every curve of this scenario."""
        if self.name == "lesion-single":
            return 1 + self.box_step
        if self.name == "global-single":
            return self.lesions
        return self.interactions

    @property
    def first_click_policy(self) -> str:
        """A session's first click goes to the centre; ``center-voxel`` keeps its voxel-unit rule."""
        return "center-voxel" if self.click_policy == "center-voxel" else "center"

    @property
    def recorded_policy(self) -> str:
        """The policy of the clicks actually placed: single-click scenarios only click centres."""
        return self.click_policy if self.corrective else self.first_click_policy

    @property
    def cvpr_scoring(self) -> bool:
        return self.preset == "cvpr25"

    def as_dict(self) -> dict:
        return asdict(self)


def _preset(name: str, preset: str) -> Scenario:
    if preset == "cvpr25":
        # An initial box step, then 5 corrective center-voxel clicks; no early stop.
        interactions = 1 + CVPR25_CLICKS if name != "global-single" else 1
        return Scenario(name, lesions=20, interactions=interactions, stop_dice=None, click_policy="center-voxel",
                        boxes=True, box_step=True, preset=preset)
    policy = "patch" if preset == "paper" else "center"
    if name == "lesion-corrective":
        return Scenario(name, lesions=20, interactions=3, stop_dice=1.0, click_policy=policy, preset=preset)
    if name == "global-corrective":
        return Scenario(name, lesions=20, interactions=60, stop_dice=0.8, click_policy=policy, preset=preset)
    return Scenario(name, lesions=20, interactions=1, stop_dice=None, click_policy="center", preset=preset)


def scenario_from_options(
    name: str,
    *,
    preset: str = "default",
    lesions: int | None = None,
    interactions: int | None = None,
    stop_dice: float | None | str = "preset",
    click_policy: str | None = None,
    alpha: float | None = None,
    boxes: bool | None = None,
) -> Scenario:
    """Resolve a scenario from a preset and the user's overrides (None = keep the preset's value).

    ``stop_dice="preset"`` keeps the preset's target; ``None`` disables early stopping. Every value
    is checked here, before any work starts.
    """
    name = look_up(name, SCENARIOS, "scenario")
    scenario = _preset(name, look_up(preset, PRESETS, "preset"))
    changes: dict = {}
    if boxes is not None:
        changes["boxes"] = boxes
        if not boxes:
            changes["box_step"] = False
    if lesions is not None:
        if int(lesions) != lesions or lesions < 1:
            raise ValueError(f"the number of lesions to prompt must be a whole number >= 1, got {lesions}")
        changes["lesions"] = int(lesions)
    if interactions is not None:
        if int(interactions) != interactions or interactions < 1:
            raise ValueError(f"the interaction budget must be a whole number >= 1, got {interactions}")
        changes["interactions"] = int(interactions)
    if stop_dice != "preset":
        if stop_dice is not None and not 0.0 < float(stop_dice) <= 1.0:
            raise ValueError(f"the early-stop Dice must be in (0, 1] or none, got {stop_dice}")
        changes["stop_dice"] = None if stop_dice is None else float(stop_dice)
    if click_policy is not None:
        changes["click_policy"] = look_up(click_policy, POLICIES, "click policy")
    if alpha is not None:
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"the edt-power exponent alpha must be finite and >= 0, got {alpha}")
        changes["alpha"] = float(alpha)
    scenario = replace(scenario, **changes)
    if scenario.box_step and scenario.budget < 2 and scenario.name != "global-single":
        raise ValueError(f"{name}: a budget of {scenario.budget} leaves no interaction after the box step")
    return scenario

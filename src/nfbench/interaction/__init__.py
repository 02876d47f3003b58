"""The simulated user: click policies, scenarios and the per-case loop."""

from nfbench.interaction.loop import CaseResult, simulate_case
from nfbench.interaction.policies import (
    DEFAULT_PATCH_MM,
    POLICIES,
    next_clicks,
    patch_voxels,
)
from nfbench.interaction.scenarios import PRESETS, SCENARIOS, Scenario, scenario_from_options

__all__ = [
    "CaseResult",
    "simulate_case",
    "DEFAULT_PATCH_MM",
    "POLICIES",
    "next_clicks",
    "patch_voxels",
    "PRESETS",
    "SCENARIOS",
    "Scenario",
    "scenario_from_options",
]

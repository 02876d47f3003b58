"""The simulated user: click policies, scenarios and the per-case loop."""

from nfbench.interaction.loop import CaseResult, simulate_case
from nfbench.interaction.policies import DEFAULT_PATCH_SIZE, POLICIES, next_clicks
from nfbench.interaction.scenarios import PRESETS, SCENARIOS, Scenario, scenario_from_options

__all__ = [
    "CaseResult",
    "simulate_case",
    "DEFAULT_PATCH_SIZE",
    "POLICIES",
    "next_clicks",
    "PRESETS",
    "SCENARIOS",
    "Scenario",
    "scenario_from_options",
]

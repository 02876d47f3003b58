"""Interactive models: the contract, the registry and the built-in weight-free baselines."""

from nfbench.models.base import CAPABILITIES, InteractiveModel, ModelError, Session, check_prediction
from nfbench.models.registry import (
    ModelInfo, available_models, load_model, missing_file, missing_modules, register_model, unregister_model,
)

__all__ = [
    "CAPABILITIES",
    "InteractiveModel",
    "ModelError",
    "Session",
    "check_prediction",
    "ModelInfo",
    "available_models",
    "load_model",
    "missing_file",
    "missing_modules",
    "register_model",
    "unregister_model",
]

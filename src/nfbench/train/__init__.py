"""Training and fine-tuning of nfbench's learned models (needs the ``torch`` extra).

:func:`train` runs a :class:`TrainConfig`; each trainable model has a recipe in
:mod:`nfbench.train.recipes`. ``nfbench train MODEL`` is the command-line form.
"""

from nfbench.train.loop import METRICS, TrainConfig, TrainError, TrainResult, train
from nfbench.train.recipes import RECIPES

__all__ = ["METRICS", "RECIPES", "TrainConfig", "TrainError", "TrainResult", "train"]

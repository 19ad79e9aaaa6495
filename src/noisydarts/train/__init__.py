"""Training a found architecture from scratch as the papers do, evaluating and exporting it.

:mod:`~noisydarts.train.config` resolves the training config, :mod:`~noisydarts.train.loop` is
the training loop, :mod:`~noisydarts.train.api` the entry points (``train``, ``evaluate``,
``export``, ``load_trained``).
"""

from .api import evaluate, export, load_trained, train
from .config import DEFAULTS, resolve_config, search_recipe, validate
from .loop import TrainResult, Trainer, build_model, evaluate_model

__all__ = ["DEFAULTS", "TrainResult", "Trainer", "build_model", "evaluate", "evaluate_model", "export", "load_trained",
           "resolve_config", "search_recipe", "train", "validate"]

"""Training a found architecture from scratch as the papers do, evaluating and exporting it.

:mod:`~noisydarts.train.config` resolves the training config, :mod:`~noisydarts.train.loop` is
the training loop, :mod:`~noisydarts.train.api` the entry points (``train``, ``evaluate``,
``export``, ``load_trained``); :mod:`~noisydarts.train.predict` applies a trained network to new
images (``load_model``, ``predict``) with the preprocessing :mod:`~noisydarts.train.preprocessing`
records.
"""

from .api import evaluate, export, load_trained, train
from .config import DEFAULTS, resolve_config, search_recipe, validate
from .loop import TrainResult, Trainer, build_model, evaluate_model
from .predict import Predictor, load_model, load_predictor, predict
from .preprocessing import transform

__all__ = ["DEFAULTS", "Predictor", "TrainResult", "Trainer", "build_model", "evaluate", "evaluate_model", "export",
           "load_model", "load_predictor", "load_trained", "predict", "resolve_config", "search_recipe", "train",
           "transform", "validate"]

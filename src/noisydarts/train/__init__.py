"""Training a found architecture from scratch as the papers do, evaluating and exporting it."""

from .loop import (DEFAULTS, TrainResult, Trainer, build_model, evaluate, evaluate_model, export, load_trained,
                   resolve_config, search_recipe, train, validate)

__all__ = ["DEFAULTS", "TrainResult", "Trainer", "build_model", "evaluate", "evaluate_model", "export", "load_trained",
           "resolve_config", "search_recipe", "train", "validate"]

"""Architecture-gradient transforms: what happens to the architecture gradient between the
estimator and the architecture optimizer.

Each architecture step, the estimator fills ``.grad`` of the supernet's architecture parameters
(:mod:`noisydarts.methods.estimators`); then the search loop calls ``transform(model)``, which may change
those gradients in place; then the optimizer steps. The loop never asks which transforms run.

Each transform module provides ``validate(cfg)`` (range checks of its config keys) and
``build(cfg, model) -> GradientTransform | None`` (None when its config switches it off);
:func:`build_gradient_transform` composes those that are on, in registry order. A transform with
random state returns it from ``state_dict()``, which the search checkpoint keeps, so a resumed
search draws the same numbers an uninterrupted one does.

* ``projection`` (:mod:`.projection`, keys ``arch.projection.*``): PCGrad-style projection of
  conflicting gradients between the edges of a cell (the PC-DARTS gradient-projection thesis).
"""

from __future__ import annotations

from types import ModuleType

from . import projection
from .base import Compose, GradientTransform

GRADIENT_TRANSFORMS: dict[str, ModuleType] = {"projection": projection}


def build_gradient_transform(cfg: dict, model) -> Compose:
    """The transforms a resolved search config switches on, for ``model`` (a supernet); with none
    on, an empty :class:`Compose` that leaves the gradients alone."""
    transforms = {}
    for name, module in GRADIENT_TRANSFORMS.items():
        transform = module.build(cfg, model)
        if transform is not None:
            transforms[name] = transform
    return Compose(transforms)


def validate(cfg: dict) -> None:
    for module in GRADIENT_TRANSFORMS.values():
        module.validate(cfg)


__all__ = ["GRADIENT_TRANSFORMS", "Compose", "GradientTransform", "build_gradient_transform", "validate"]

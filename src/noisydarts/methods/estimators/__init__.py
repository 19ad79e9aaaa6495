"""Architecture-gradient estimators, by name.

An estimator fills ``p.grad`` of the supernet's architecture parameters for one architecture
step, given a train batch and a val batch, and returns the validation loss (a tensor, for
logging). The search loop calls :meth:`Estimator.step` and then the architecture optimizer;
it never looks at which estimator it has. Each estimator module provides ``DEFAULTS`` (its
``estimator.*`` config keys) and ``build(cfg) -> Estimator``.
"""

from __future__ import annotations

from types import ModuleType

from ... import config
from . import amended, first_order, second_order
from .base import Estimator, StepContext

ESTIMATORS: dict[str, ModuleType] = {"first_order": first_order, "second_order": second_order, "amended": amended}


def build_estimator(cfg: dict) -> Estimator:
    return ESTIMATORS[cfg["estimator"]["name"]].build(cfg)


__all__ = ["ESTIMATORS", "Estimator", "StepContext", "build_estimator"]


config.SEARCH.register_named("estimator", ESTIMATORS, default="first_order", owner=__name__)

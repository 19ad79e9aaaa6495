"""Weight-step perturbations: the seam the search loop calls around every weight step.

Some methods train the network weights at perturbed architecture weights, so that the weights
are good for a whole neighbourhood of the current architecture, not for one point of it
(SDARTS, :mod:`noisydarts.methods.sdarts`). The loop does not ask which one runs: it builds one
object from the config (:func:`build_weight_perturbation`; the no-op :class:`WeightStepPerturbation`
when ``perturb.kind`` is ``none``) and calls

* ``set_epoch(epoch, epochs)`` once per epoch (schedules), and
* ``with perturbation.weight_step(model, x, y, amp):`` around the weight step's forward and
  backward: on entry it may set ``model.mixing_perturbation`` (per cell type, an ``[edges, ops]``
  tensor that :meth:`noisydarts.nn.supernet.Supernet.mixing_weights` adds to the op weights), on
  exit it always clears it, so the architecture step, validation and derivation never see it.

The architecture step runs before and outside the context: α's gradient is that of the
unperturbed weights. A perturbation holds no state of its own beyond the config and the epoch, and
draws its random numbers from the global generator, whose state the checkpoint keeps: a resumed
search is exact.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch


class WeightStepPerturbation:
    """No perturbation (``perturb.kind: none``): the weight step runs at the weights as they are."""

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedules."""

    @contextlib.contextmanager
    def weight_step(self, model, x: torch.Tensor, y: torch.Tensor, amp=contextlib.nullcontext()):
        """Around one weight step on ``(x, y)``; ``amp``: the step's autocast context."""
        yield


#: ``perturb.kind`` -> ``builder(cfg) -> WeightStepPerturbation``; a method module adds its kinds when
#: imported (SDARTS: ``random``, ``adversarial``).
WEIGHT_PERTURBATIONS: dict[str, Callable[[dict], WeightStepPerturbation]] = {"none": lambda cfg: WeightStepPerturbation()}


def build_weight_perturbation(cfg: dict) -> WeightStepPerturbation:
    """The weight-step perturbation a resolved search config asks for (``perturb.kind``)."""
    return WEIGHT_PERTURBATIONS[cfg["perturb"]["kind"]](cfg)

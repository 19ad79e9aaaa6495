"""Architecture-loss regularizers: terms of the architecture parameters alone that the
architecture loss adds (never the weight step's: they have no network weight in them).

A regularizer is a small module the supernet owns (``supernet.regularizers``, filled from
:attr:`noisydarts.methods.parts.MethodParts.regularizers` when a space builds its supernet).
:meth:`noisydarts.nn.supernet.Supernet.arch_regularizer` sums what they return, and every
architecture-gradient estimator adds that sum to ``L_val``. Regularizers compose with any
weighting: the weighting may bring some along (SI-VDNAS' KL, :class:`~.sivdnas.SIVDNASKL`), and
any other can be added to the parts.

The contract, all optional but ``forward``:

* ``forward(supernet) -> Tensor | None`` (called as ``regularizer(supernet)``): the term, or None
  when it has nothing to add this step;
* ``set_epoch(epoch, epochs)``, ``set_search_data(num_train, num_val)``: the supernet forwards its
  own calls of the same name;
* state: a regularizer is an ``nn.Module``, so its buffers, parameters and ``get_extra_state`` go
  into the supernet's ``state_dict`` and a resumed search restores them (a stateless one adds
  no key).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


class Regularizer(nn.Module):
    """Base class of the architecture-loss terms (see the module docstring)."""

    def forward(self, supernet: nn.Module) -> torch.Tensor | None:
        raise NotImplementedError

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedules."""

    def set_search_data(self, num_train: int, num_val: int) -> None:
        """Sizes of the search-train and search-val sets (for terms normalized per example)."""


#: ``name -> builder(cfg) -> list[Regularizer]``: the regularizers that config keys switch on
#: (β-DARTS' beta decay, FairDARTS' zero-one loss, ...), whatever the weighting. A method module
#: registers its builder when imported (:func:`register_regularizer`); :func:`regularizers_from_config`
#: collects what a resolved config asks for.
REGULARIZERS: dict[str, Callable[[dict], list]] = {}


def register_regularizer(name: str, builder: Callable[[dict], list]) -> None:
    """Register ``builder(cfg) -> list[Regularizer]`` (an empty list when its keys leave it off)."""
    REGULARIZERS[name] = builder


def regularizers_from_config(cfg: dict) -> list[Regularizer]:
    """Every registered regularizer a resolved search config switches on, in registration order."""
    return [r for builder in REGULARIZERS.values() for r in builder(cfg)]

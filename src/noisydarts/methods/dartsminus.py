"""DARTS- (Chu et al., ICLR 2021): an auxiliary skip connection on every mixed edge, decayed to 0.

Every mixed edge gets a skip connection outside the softmax (Fig. 1 of DARTS-: "an auxiliary skip
connection with a decay rate β between every two nodes"; release ``src/search/model_search.py``,
``MixedOp.forward``)::

    o_bar(x) = Σ_k softmax(α)_k o_k(x) + β(e) · x

so the residual benefit that makes DARTS over-select ``skip_connect`` is there whatever α says,
and the ops compete on what they add beyond it. β is decayed over the search (from β0 = 1
towards 0), so the supernet at the end is the DARTS supernet, and derivation ignores the
auxiliary skip: it is not in α (the genotype is DARTS' derivation of the same α).
The paper's text was not at hand here: every detail below is the release's.

* **Schedule** of β per epoch ``e`` of ``E`` (release ``src/utils.py``, ``DecayScheduler`` with
  ``T_start = 0``, ``T_max = T_stop = E``; ``--decay linear`` in ``scripts/run_darts_minus.sh``)::

      linear:    β(e) = β0 · (1 - e / E)                (1 at the first epoch, β0 / E at the last)
      cosine:    β(e) = β0 · (1 + cos(π e / E)) / 2
      constant:  β(e) = β0                              (the release without ``--decay``)

* **The auxiliary op** (:meth:`AuxiliarySkip.make_op`): the identity on a stride-1 edge; on a
  stride-2 edge of a reduction cell, where an identity cannot change the resolution, a
  factorized reduce (two offset stride-2 1x1 convs, BN without affine parameters), as the
  release's ``MixedOp`` builds it. Its convs are network weights (the weight step trains them).
* **Where it acts**: on the edge's whole input, after the ops' sum (and, with PC-DARTS partial
  channels, after the channel shuffle: the skip carries all channels, the ops 1/K of them); it is
  not multiplied by PC-DARTS' edge weight nor touched by the NoisyDARTS skip transform: it stands
  outside every architecture parameter. It is there in evaluation mode too (the supernet's
  validation), as in the release.

``β`` is a buffer of :class:`AuxiliarySkip`, which the supernet owns once (``supernet.auxiliary_skip``)
and schedules in ``set_epoch``; every mixed edge reads it. The buffer is saved with the supernet
(a checkpoint holds the β of its epoch); a resumed search sets it again from the epoch.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .. import config
from ..errors import UserError
from ..nn.ops import FactorizedReduce

DEFAULTS = {
    "enabled": False,      # the DARTS- auxiliary skip on every mixed edge
    "beta": 1.0,           # β0, the skip's weight at the first epoch (the release's --skip_beta: 1)
    "schedule": "linear",  # linear (the release's --decay linear) | cosine | constant: β over the epochs
}

SCHEDULES = ("linear", "cosine", "constant")


def skip_weight(epoch: int, epochs: int, beta: float = 1.0, schedule: str = "linear") -> float:
    """``β`` of epoch ``epoch`` (0-based) of ``epochs`` (see the module docstring)."""
    progress = epoch / max(epochs, 1)
    if schedule == "linear":
        return beta * (1.0 - progress)
    if schedule == "cosine":
        return beta * (1.0 + math.cos(math.pi * progress)) / 2.0
    return float(beta)


class AuxiliarySkip(nn.Module):
    """β and its schedule (a buffer, ``set_epoch``), and the factory of each edge's auxiliary op."""

    def __init__(self, beta: float = 1.0, schedule: str = "linear"):
        super().__init__()
        self.beta0, self.schedule = float(beta), schedule
        self.register_buffer("beta", torch.tensor(skip_weight(0, 1, self.beta0, schedule)))

    @torch.no_grad()
    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.beta.fill_(skip_weight(epoch, epochs, self.beta0, self.schedule))

    @staticmethod
    def make_op(C: int, stride: int, affine: bool = False, track_stats: bool = True) -> nn.Module:
        """The auxiliary skip of an edge of ``C`` channels: identity, or a factorized reduce at stride 2."""
        return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine, track_stats)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):g}, {self.schedule} from {self.beta0:g}"


def build_auxiliary_skip(cfg: dict) -> AuxiliarySkip | None:
    """The part of a resolved search config (``aux_skip``), or None when it is off."""
    section = cfg.get("aux_skip", DEFAULTS)  # a config built by hand may lack the section
    return AuxiliarySkip(section["beta"], section["schedule"]) if section["enabled"] else None


def validate(cfg: dict) -> None:
    section = cfg["aux_skip"]
    config.check_choice("aux_skip.schedule", section["schedule"], SCHEDULES)
    beta = section["beta"]
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise UserError(f"aux_skip.beta must be a number > 0 (the auxiliary skip's weight at the first epoch; "
                        f"the release: 1), got {beta!r}")
    if not section["enabled"]:
        changed = [k for k in ("beta", "schedule") if section[k] != DEFAULTS[k]]
        if changed:
            raise UserError(f"aux_skip.{changed[0]}={section[changed[0]]} is set, but aux_skip.enabled is false: "
                            "set aux_skip.enabled=true (DARTS-), or drop the key")


config.SEARCH.register("aux_skip", DEFAULTS, validate=validate, owner=__name__)

"""β-DARTS (Ye et al., CVPR 2022): the Beta-Decay regularization of the architecture parameters.

β-DARTS calls the softmax-activated architecture parameters β = softmax(α) and keeps their value
and variance from growing (the abstract) by regularizing the smoothmax of α on every edge, the
Beta-Decay loss ``L_β``; the release's README points to it as "one line of code"
(``optimizers/darts/architect.py``, ``mlc_loss``)::

    L_β = mean over edges (i, j) of  log Σ_k exp(α_k^(i,j))        (logsumexp over an edge's ops)

    min_α  L_val(w*(α), α) + λ(e) · L_β

Its gradient is ∂L_β/∂α_k = softmax(α)_k / edges: every α is pushed down in proportion to its own
β, the largest the most, so no op runs away with the softmax (hence "Beta-Decay").

* **Where**: on ``alpha_<kind>`` of every cell type of the supernet, the mean taken over all their
  rows together. The release computes ``torch.logsumexp(alpha, dim=-1).mean()`` on its one
  NAS-Bench-201 α (the mean over the 6 edges); its DARTS-space script hands it the list of the
  normal and reduction α, which the function rejects: we take the mean over both stacked, the
  reading that runs. It is a term of α alone
  in the architecture loss (:class:`BetaDecay`, a :class:`~.regularizers.Regularizer`), so it
  composes with every weighting that keeps ``alpha_<kind>`` and every estimator; other
  architecture parameters (PC-DARTS' edge weights ``beta_<kind>``, SI-VDNAS' variances) are
  untouched, as in the release, which regularizes α only.
* **Schedule** of λ per epoch ``e`` of ``E`` (release ``_backward_step``: ``weights = 0 + 50*epoch/100``)::

      linear:    λ(e) = start + (weight - start) · e / E
      constant:  λ(e) = weight

  The release's λ grows by 0.5 per epoch from 0: ``start: 0``, ``weight: E / 2`` (25 for a
  50-epoch search, 50 for the release's 100-epoch NAS-Bench-201 default). The paper's text was
  not at hand here: the form and the schedule are the release's.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import config
from ..errors import UserError
from .regularizers import Regularizer, register_regularizer

DEFAULTS = {
    "weight": 0.0,        # λ at the end of the search (E / 2 in the release); 0 = off
    "start": 0.0,         # λ at epoch 0 (linear schedule; the release: 0)
    "schedule": "linear",  # linear: start -> weight over the epochs | constant: weight throughout
}

SCHEDULES = ("linear", "constant")


def beta_decay_loss(alphas) -> torch.Tensor:
    """``L_β``: the mean over all rows (edges) of the given ``[edges, ops]`` α tensors of the
    logsumexp over the row's ops."""
    return torch.cat([alpha.logsumexp(dim=-1) for alpha in alphas]).mean()


def coefficient(epoch: int, epochs: int, weight: float, start: float = 0.0, schedule: str = "linear") -> float:
    """``λ`` of epoch ``epoch`` (0-based) of ``epochs`` (see the module docstring)."""
    if schedule == "constant":
        return float(weight)
    return float(start + (weight - start) * epoch / max(epochs, 1))


class BetaDecay(Regularizer):
    """``λ(e) · L_β`` over the supernet's ``alpha_<kind>`` (β-DARTS; see the module docstring).

    Stateless: λ is a function of the epoch the supernet passes to :meth:`set_epoch` (every epoch
    of a search, resumed or not), so a checkpoint holds nothing of it."""

    def __init__(self, weight: float, start: float = 0.0, schedule: str = "linear"):
        super().__init__()
        self.weight, self.start, self.schedule = float(weight), float(start), schedule
        self.lam = coefficient(0, 1, self.weight, self.start, schedule)  # epoch 0 until told otherwise

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.lam = coefficient(epoch, epochs, self.weight, self.start, self.schedule)

    def forward(self, supernet: nn.Module) -> torch.Tensor | None:
        if self.lam == 0.0:  # the first epoch of the release's schedule: nothing to add
            return None
        return self.lam * beta_decay_loss([supernet.arch[f"alpha_{kind}"] for kind in supernet.kinds])

    def extra_repr(self) -> str:
        return f"lambda={self.lam:g}, {self.schedule} from {self.start:g} to {self.weight:g}"


def regularizers_from_config(cfg: dict) -> list[Regularizer]:
    """The Beta-Decay term when ``beta_decay.weight`` > 0, else nothing."""
    section = cfg.get("beta_decay", DEFAULTS)  # a config built by hand may lack the section
    if section["weight"] == 0:
        return []
    return [BetaDecay(section["weight"], section["start"], section["schedule"])]


def validate(cfg: dict) -> None:
    section = cfg["beta_decay"]
    weight, start = section["weight"], section["start"]
    config.check_choice("beta_decay.schedule", section["schedule"], SCHEDULES)
    for key, value in (("weight", weight), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise UserError(f"beta_decay.{key} must be a number >= 0 (the coefficient λ of the Beta-Decay loss), got {value!r}")
    if weight == 0:
        changed = [k for k in ("start", "schedule") if section[k] != DEFAULTS[k]]
        if changed:
            raise UserError(f"beta_decay.{changed[0]}={section[changed[0]]} is set, but beta_decay.weight is 0 "
                            "(Beta-Decay off): set beta_decay.weight > 0 (the release: epochs / 2), or drop the key")
    elif section["schedule"] == "constant" and start != DEFAULTS["start"]:
        raise UserError(f"beta_decay.start={start} is set, but beta_decay.schedule is constant (λ = weight throughout): "
                        "set beta_decay.schedule=linear, or drop beta_decay.start")


config.SEARCH.register("beta_decay", DEFAULTS, validate=validate, owner=__name__)
register_regularizer("beta_decay", regularizers_from_config)

"""FairDARTS' zero-one loss (Chu et al., ECCV 2020) as an architecture-loss regularizer.

``zero_one.weight > 0`` (:class:`ZeroOneLoss`): the paper's ``L_total = L_val + w_{0-1} L_{0-1}``
with ``L_{0-1} = -1/N sum_i (w_i - 0.5)^2`` over the N op weights of all cell types together
(release ``separate_loss.py``, ``ConvSeparateLoss``: ``-mse_loss(sigmoid(alphas), 0.5)`` over normal
and reduce, weight 10; ``none``, absent from the release's ops, is left out). ``form: l1`` is the
release's ``TriSeparateLoss``, ``-1/N sum_i |w_i - 0.5|``. It pushes every weight away from 1/2,
towards 0 or 1. It is a term of alpha alone, so it enters the architecture loss only (the release
also adds it to the weight step's loss, where it has no gradient w.r.t. the weights). The paper's
equation numbers were not checked (no copy of its text was at hand): the forms are the release's.

FairDARTS pairs it with the sigmoid weighting (:mod:`noisydarts.methods.fairdarts`); on the op
weights of another deterministic weighting (DARTS' softmax, PC-DARTS' edge normalization) it is an
ablation. A weighting that samples its weights (``Weighting.stochastic``: SI-VDNAS, DrNAS) has no
deterministic weight to push and is refused.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import config
from ..errors import UserError
from .regularizers import Regularizer, register_regularizer
from .weightings import WEIGHTINGS

FORMS = ("l2", "l1")

#: The ``zero_one`` section: the zero-one loss in the architecture loss, for any deterministic weighting.
ZERO_ONE_DEFAULTS = {
    "weight": 0.0,               # w_{0-1}; 0 = off (the release: --aux_loss_weight 10)
    "form": "l2",                # l2: -mean (w - 1/2)^2 (release default) | l1: -mean |w - 1/2|
}


def zero_one_loss(weights: torch.Tensor, form: str = "l2") -> torch.Tensor:
    """``L_{0-1}``: ``-mean (w - 1/2)^2`` (``l2``, the paper's) or ``-mean |w - 1/2|`` (``l1``)."""
    distance = weights - 0.5
    return -(distance.square() if form == "l2" else distance.abs()).mean()


class ZeroOneLoss(Regularizer):
    """``weight * L_{0-1}`` over the op weights of every cell type together (one mean, as the
    release's loss over ``cat(normal, reduce)``), ``none`` left out (the release's op set has
    none)."""

    def __init__(self, weight: float, form: str = "l2"):
        super().__init__()
        self.weight, self.form = float(weight), form

    def forward(self, supernet: nn.Module) -> torch.Tensor:
        # ``none`` is never computed: no data gradient reaches its weight, so the loss alone would
        # push it to 0 or 1 at random (and NAS-Bench-201's argmax may pick it); it is left out.
        ops = [k for k, name in enumerate(getattr(supernet, "op_names", ())) if name != "none"] or None
        rows = [supernet.weighting(kind) for kind in supernet.kinds]
        rows = [(w if ops is None else w[:, ops]).reshape(-1) for w in rows]
        return self.weight * zero_one_loss(torch.cat(rows), self.form)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, form={self.form}"


def build_zero_one(cfg: dict) -> list[Regularizer]:
    section = cfg["zero_one"]
    return [ZeroOneLoss(section["weight"], section["form"])] if section["weight"] > 0 else []


def validate_zero_one(cfg: dict) -> None:
    """The weight and form of the loss; refused with a weighting that samples its weights (``stochastic``)."""
    section, weighting = cfg["zero_one"], cfg["edge"]["weighting"]
    w = section["weight"]
    config.check(not isinstance(w, bool) and w >= 0, f"zero_one.weight must be >= 0 (0 = off; the release: 10), got {w}")
    config.check_choice("zero_one.form", section["form"], FORMS)
    if w == 0 and section["form"] != ZERO_ONE_DEFAULTS["form"]:
        raise UserError(f"zero_one.form={section['form']} is set, but zero_one.weight is 0 (the loss is off): "
                        "set zero_one.weight, e.g. 10 as the release")
    if w > 0 and weighting in WEIGHTINGS and WEIGHTINGS[weighting].stochastic:
        deterministic = [name for name, cls in WEIGHTINGS.items() if not cls.stochastic]
        raise UserError(f"zero_one.weight={w} cannot be used with edge.weighting={weighting} (the loss pushes "
                        f"deterministic op weights to 0 or 1): set zero_one.weight=0, or edge.weighting to one of "
                        f"{', '.join(deterministic)}")


config.SEARCH.register("zero_one", ZERO_ONE_DEFAULTS, validate=validate_zero_one, owner=__name__)
register_regularizer("zero_one", build_zero_one)

"""Weightings: architecture parameters -> ``[edges, ops]`` op weights and ``[edges]`` edge weights.

The contract is :class:`noisydarts.nn.mixed.Weighting`; this module holds the deterministic ones
(DARTS' softmax, PC-DARTS' edge normalization) and the registry ``edge.weighting`` chooses from.
SI-VDNAS' stochastic weighting lives in :mod:`noisydarts.methods.sivdnas`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import config
from ..nn.mixed import Weighting
from .drnas import DirichletWeighting
from .fairdarts import SigmoidWeighting
from .sivdnas import VariationalDropoutWeighting


class SoftmaxWeighting(Weighting):
    """DARTS: ``softmax(alpha)`` over the ops of each edge (Eq. 2 of DARTS); no edge weights."""

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets):
        super().__init__()
        self.arch = [arch]  # a reference, not a submodule: the supernet owns the parameters

    def forward(self, kind: str) -> torch.Tensor:
        """``[edges, ops]`` op weights of cell type ``kind``."""
        return torch.softmax(self.arch[0][f"alpha_{kind}"], dim=-1)


class EdgeNormWeighting(SoftmaxWeighting):
    """PC-DARTS edge normalization (PC-DARTS Sec. 3.3; thesis Sec. 3.5): a node is
    ``x_j = sum_i softmax_i(beta_ij) f_ij(x_i)``, the softmax over the edges that enter node j,
    and it multiplies the whole output of edge ij, its bypass channels included. The op weights
    stay ``softmax(alpha)``. ``beta`` starts at ``1e-3 * randn`` as in the PC-DARTS release."""

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets):
        super().__init__(arch, kinds, edge_targets)
        targets = list(edge_targets)
        self.register_buffer("targets", torch.as_tensor(targets), persistent=False)
        self.num_nodes = max(targets) + 1  # from the list: no .item(), so it builds on the meta device too
        for kind in kinds:
            arch[f"beta_{kind}"] = nn.Parameter(1e-3 * torch.randn(len(targets)))

    def edge_weights(self, kind: str) -> torch.Tensor:
        """``softmax(beta)`` within each group of edges that share a target node."""
        beta = self.arch[0][f"beta_{kind}"]
        # Softmax within groups of edges that share a target node, without a Python loop.
        shifted = beta - beta.detach().max()
        e = shifted.exp()
        denom = torch.zeros(self.num_nodes, dtype=e.dtype, device=e.device).index_add(0, self.targets, e)
        return e / denom[self.targets]


#: ``edge.weighting`` -> the weighting class (a class may offer ``from_config(cfg)`` and ``validate(cfg)``)
WEIGHTINGS = {"softmax": SoftmaxWeighting, "edge_norm": EdgeNormWeighting, "si_vdnas": VariationalDropoutWeighting,
              "sigmoid": SigmoidWeighting, "dirichlet": DirichletWeighting}


def weighting_factory(cfg: dict):
    """What a supernet calls as ``factory(arch, kinds, edge_targets)`` to build the weighting a
    resolved search config names (``edge.weighting``), with its options bound."""
    cls = WEIGHTINGS[cfg["edge"]["weighting"]]
    return cls.from_config(cfg) if hasattr(cls, "from_config") else cls


def build_weighting(weighting, arch: nn.ParameterDict, kinds, edge_targets) -> Weighting:
    """``weighting``: a name in :data:`WEIGHTINGS` or a factory (:func:`weighting_factory`)."""
    factory = WEIGHTINGS[weighting] if isinstance(weighting, str) else weighting
    return factory(arch, kinds, edge_targets)


#: The ``edge`` config section: how a mixed edge weights its ops, and PC-DARTS' partial channels.
DEFAULTS: dict = {
    "weighting": "softmax",      # softmax (DARTS) | edge_norm (PC-DARTS) | si_vdnas (SI-VDNAS) | sigmoid (FairDARTS) | dirichlet (DrNAS)
    "partial_channels": 1,       # K of PC-DARTS; 1 = all channels
}


def validate(cfg: dict) -> None:
    config.check_choice("edge.weighting", cfg["edge"]["weighting"], WEIGHTINGS)
    config.check(cfg["edge"]["partial_channels"] >= 1, "edge.partial_channels must be >= 1 (1 = all channels)")


config.SEARCH.register("edge", DEFAULTS, validate=validate, owner=__name__)

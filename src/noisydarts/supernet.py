"""What every search space's supernet has in common.

Architecture parameters live in ``self.arch`` (an ``nn.ParameterDict``), so their names start
with ``arch.``: that is how they are told apart from the network weights, and it keeps
``.to()``, ``state_dict()``, optimizers and DDP working without special cases.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCH_PREFIX = "arch."


def is_arch_parameter(name: str) -> bool:
    return name.startswith(ARCH_PREFIX) or f".{ARCH_PREFIX}" in name


class Supernet(nn.Module):
    #: cell types with their own architecture parameters, e.g. ("normal", "reduce")
    kinds: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self.arch = nn.ParameterDict()
        self.noise: nn.Module | None = None

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if is_arch_parameter(n)]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not is_arch_parameter(n)]

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedules of the pluggable parts (the noise decay)."""
        if self.noise is not None:
            self.noise.set_epoch(epoch, epochs)

    @torch.no_grad()
    def arch_weights(self) -> dict[str, torch.Tensor]:
        """Effective ``[edges, ops]`` weights per cell type (op weight x edge weight: what
        derivation ranks), deterministic (no sampling)."""
        training = self.weighting.training
        self.weighting.eval()
        try:
            return {kind: self.weighting.effective(kind).detach().float().cpu() for kind in self.kinds}
        finally:
            self.weighting.train(training)

    def arch_edges(self) -> dict[str, list[tuple[int, int]]] | None:
        """The cell graph behind the architecture parameters: per cell type, ``(target, source)``
        of the edge each row of ``alpha_<kind>`` weights (node numbers of the space's cell).
        None for a space whose rows are not edges of a cell (a layer-wise space); gradient
        transforms that work on edges (:mod:`noisydarts.gradients`) reject such a space."""
        return None

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of a search step; the weight step and every architecture-gradient
        estimator use it, so extra loss terms (an auxiliary head) live here, not in the loop."""
        logits = self(x).float()
        return F.cross_entropy(logits, y), logits

    def genotype(self):
        """Derive the discrete genotype from the current architecture parameters (each space's)."""
        raise NotImplementedError

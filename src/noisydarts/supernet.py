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

    def set_phase(self, phase: str) -> None:
        """The search loop says which step runs next, ``arch`` or ``weights``, so a pluggable
        part can act in one of them only (``noise.weight_step: false``)."""
        if self.noise is not None and hasattr(self.noise, "set_phase"):
            self.noise.set_phase(phase)

    @torch.no_grad()
    def arch_weights(self) -> dict[str, torch.Tensor]:
        """Effective ``[edges, ops]`` weights per cell type, deterministic (no sampling)."""
        training = self.weighting.training
        self.weighting.eval()
        try:
            return {kind: self.weighting(kind).detach().float().cpu() for kind in self.kinds}
        finally:
            self.weighting.train(training)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of a search step; the weight step and every architecture-gradient
        estimator use it, so extra loss terms (an auxiliary head) live here, not in the loop."""
        logits = self(x).float()
        return F.cross_entropy(logits, y), logits

    # Each space implements these:
    def genotype(self):
        raise NotImplementedError

    def genotype_metrics(self, genotype) -> dict:
        """Numbers about a derived genotype worth logging every epoch."""
        return {}

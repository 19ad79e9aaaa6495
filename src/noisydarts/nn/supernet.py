"""What every search space's supernet has in common.

Architecture parameters live in ``self.arch`` (an ``nn.ParameterDict``), so their names start
with ``arch.``: that is how they are told apart from the network weights, and it keeps
``.to()``, ``state_dict()``, optimizers and DDP working without special cases.

The weighting (``self.weighting``, see :class:`noisydarts.nn.mixed.Weighting`) is reached through
the methods below, which the search loop and the estimators call whatever the method: per
iteration (:meth:`Supernet.begin_step`), per epoch (:meth:`Supernet.set_epoch`), the weights of
one forward (:meth:`Supernet.mixing_weights`), a regularizer of the architecture loss
(:meth:`Supernet.arch_regularizer`: the sum of ``self.regularizers``), optimizer groups, logged
numbers and what derivations rank by.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mixed import MixedEdge, Weighting

ARCH_PREFIX = "arch."
_NO_WEIGHTING = Weighting()  # the hooks' defaults, for a supernet that mixes without a weighting


def is_arch_parameter(name: str) -> bool:
    return name.startswith(ARCH_PREFIX) or f".{ARCH_PREFIX}" in name


class Supernet(nn.Module):
    #: cell types with their own architecture parameters, e.g. ("normal", "reduce")
    kinds: tuple[str, ...] = ()
    #: per cell type, an ``[edges, ops]`` tensor :meth:`mixing_weights` adds to the op weights, or None;
    #: set only for the duration of a weight step (:mod:`noisydarts.methods.perturbation`, SDARTS)
    mixing_perturbation: dict[str, torch.Tensor] | None = None

    def __init__(self):
        super().__init__()
        self.arch = nn.ParameterDict()
        self.noise: nn.Module | None = None
        #: DARTS-' auxiliary skip (β and its schedule, :mod:`noisydarts.methods.dartsminus`), read by the mixed edges
        self.auxiliary_skip: nn.Module | None = None
        #: architecture-loss terms (``regularizer(supernet) -> Tensor | None``, see
        #: :mod:`noisydarts.methods.regularizers`), summed by :meth:`arch_regularizer`
        self.regularizers = nn.ModuleList()

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if is_arch_parameter(n)]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not is_arch_parameter(n)]

    def arch_param_groups(self) -> list[dict]:
        """The architecture optimizer's parameter groups: one, plus a group without weight decay
        for the parameters the weighting exempts (SI-VDNAS' log-variances)."""
        exempt = {id(self.arch[name]) for name in self._hooks.no_weight_decay}
        params = self.arch_parameters()
        groups = [{"params": [p for p in params if id(p) not in exempt]}]
        if exempt:
            groups.append({"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    def compile_regions(self) -> list[nn.Module]:
        """The parts the ``compile`` key compiles one by one (:mod:`noisydarts.nn.compiling`): every
        mixed edge. Edges of the same shape share a compiled graph."""
        return [m for m in self.modules() if isinstance(m, MixedEdge)]

    # --- the weighting's hooks ---
    @property
    def _hooks(self) -> Weighting:
        weighting = getattr(self, "weighting", None)
        return _NO_WEIGHTING if weighting is None else weighting

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedules of the pluggable parts (the noise decay, SI-VDNAS' annealing)."""
        if self.noise is not None:
            self.noise.set_epoch(epoch, epochs)
        self._hooks.set_epoch(epoch, epochs)
        for regularizer in self.regularizers:
            regularizer.set_epoch(epoch, epochs)
        if self.auxiliary_skip is not None:  # DARTS-' β
            self.auxiliary_skip.set_epoch(epoch, epochs)

    def set_phase(self, phase: str) -> None:
        """The search loop says which step runs next, ``arch`` or ``weights``, so a pluggable
        part can act in one of them only (``noise.weight_step: false``)."""
        if self.noise is not None and hasattr(self.noise, "set_phase"):
            self.noise.set_phase(phase)

    def begin_step(self) -> None:
        """Called once per search iteration, before its architecture and weight steps (SI-VDNAS
        samples the Bernoulli masks that both steps share)."""
        self._hooks.begin_step()

    def set_search_data(self, num_train: int, num_val: int) -> None:
        """The search-train and search-val set sizes (SI-VDNAS divides its KL by ``num_val``)."""
        self._hooks.set_search_data(num_train, num_val)
        for regularizer in self.regularizers:
            regularizer.set_search_data(num_train, num_val)

    def add_regularizers(self, regularizers) -> None:
        """Add architecture-loss terms (:mod:`noisydarts.methods.regularizers`) to :meth:`arch_regularizer`."""
        for regularizer in regularizers:
            self.regularizers.append(regularizer)

    def arch_regularizer(self) -> torch.Tensor | None:
        """The sum of the regularizers' terms (of the architecture parameters alone) that the
        architecture loss adds (the estimators add it to ``L_val``; the weight step never: it has
        no weight in it), or None when there is none."""
        total = None
        for regularizer in self.regularizers:
            term = regularizer(self)
            if term is not None:
                total = term if total is None else total + term
        return total

    def mixing_weights(self, batch_size: int, kinds=None) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Per cell type (``kinds``; None: every one), ``(op weights, edge weights)`` for a forward on
        ``batch_size`` samples. Op weights are ``[edges, ops]``, or ``[edges, ops, B, 1, 1, 1]`` from a
        per-sample weighting in training mode (rows broadcast against the ``[B, C, H, W]`` op outputs);
        edge weights are ``[edges]`` (PC-DARTS edge normalization) or None. A weighting with
        ``per_cell`` is asked once per cell, for that cell's type alone."""
        out = {}
        for kind in self.kinds if kinds is None else kinds:
            w = self.weighting(kind, batch_size) if self.weighting.per_sample else self.weighting(kind)
            if w.dim() > 2 and torch.is_autocast_enabled(w.device.type):
                # A [B, 1, 1, 1] float32 factor would promote bf16 op outputs to float32.
                w = w.to(torch.get_autocast_dtype(w.device.type))
            if self.mixing_perturbation is not None:
                w = w + self.mixing_perturbation[kind]
            out[kind] = (w, self.weighting.edge_weights(kind))
        return out

    def epoch_metrics(self) -> dict:
        """Numbers about the architecture state logged every epoch besides α (the weighting's)."""
        return self._hooks.metrics()

    # --- deterministic views of the architecture ---
    def _eval_weighting(self, fn) -> dict[str, torch.Tensor]:
        training = self.weighting.training
        self.weighting.eval()
        try:
            with torch.no_grad():
                return {kind: fn(kind).detach().float().cpu() for kind in self.kinds}
        finally:
            self.weighting.train(training)

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """Effective ``[edges, ops]`` weights per cell type (op weight x edge weight: what
        derivation ranks), deterministic (no sampling)."""
        return self._eval_weighting(self.weighting.effective)

    def arch_edges(self) -> dict[str, list[tuple[int, int]]] | None:
        """The cell graph behind the architecture parameters: per cell type, ``(target, source)``
        of the edge each row of ``alpha_<kind>`` weights (node numbers of the space's cell).
        None for a space whose rows are not edges of a cell (a layer-wise space); gradient
        transforms that work on edges (:mod:`noisydarts.methods.gradients`) reject such a space."""
        return None

    def selection_scores(self) -> dict[str, torch.Tensor]:
        """Per cell type, the ``[edges, ops]`` scores a per-edge argmax derivation ranks ops by:
        the effective weights (DARTS), or what the weighting says (SI-VDNAS: keep probabilities)."""
        return self._eval_weighting(self.weighting.selection_scores)

    @torch.no_grad()
    def keep_masks(self, derivation: str | None = None) -> dict[str, torch.Tensor] | None:
        """Per cell type, the bool ``[edges, ops]`` mask of what a derived cell keeps when the
        weighting selects the architecture itself (SI-VDNAS), else None (``none`` never kept)."""
        never = [k for k, name in enumerate(getattr(self, "op_names", ())) if name == "none"]
        masks = {kind: self.weighting.keep_masks(kind, derivation, never) for kind in self.kinds}
        return None if any(m is None for m in masks.values()) else masks

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of a search step; the weight step and every architecture-gradient
        estimator use it, so extra loss terms (an auxiliary head) live here, not in the loop."""
        logits = self(x).float()
        return F.cross_entropy(logits, y), logits

    def genotype(self):
        """Derive the discrete genotype from the current architecture parameters (each space's)."""
        raise NotImplementedError



def search_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The search loss: the supernet's ``training_loss`` (cross entropy, plus an auxiliary head's).
    The weight step, every architecture-gradient estimator and the Hessian monitor use it."""
    return model.training_loss(x, y)[0]

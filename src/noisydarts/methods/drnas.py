"""DrNAS (Chen et al., ICLR 2021): op weights drawn from a Dirichlet distribution learned by pathwise gradients.

``edge.weighting: dirichlet`` (options in the ``drnas`` config section). Each edge's op weights
are a random variable ``w ~ Dir(beta)`` whose concentration comes from the architecture
parameters through the shifted ELU, ``beta = ELU(alpha) + 1 > 0`` (the release's
``utils.process_step_vector``). The architecture step minimizes the paper's objective
``E_{w ~ Dir(beta)}[L_val(w)] + lambda d(beta, anchor)`` (the paper's Sec. 2; the equations are
read from the release, ``model_search.py`` and ``architect.py``, which this module follows):

* **training mode**: one sample per forward and cell type, ``w = Dir(beta).rsample()``, whose
  gradient reaches ``alpha`` through the implicit reparameterization of the Gamma samples (the
  paper's "pathwise derivatives"; torch's ``Dirichlet.rsample``, as the release); drawn from
  torch's global generator, which the run seeds and a checkpoint keeps, so the same seed gives
  the same search and a resume continues it exactly;
* **eval mode** (validation, derivation, plots): the Dirichlet mean ``beta / sum(beta)``. The
  release samples in eval mode too and derives from ``softmax(alpha)``; within an edge both
  rank the ops alike (see docs/methods/drnas.md);
* **regularizer** (:class:`DirichletRegularizer`), ``drnas.reg``: ``l2`` (the release's default:
  Adam weight decay ``reg_scale`` on ``alpha``, i.e. ``reg_scale / 2 * ||alpha||^2``) or ``kl``,
  ``reg_scale * KL(Dir(beta) || Dir(1))`` against the uniform anchor (release ``_get_kl_reg``).

**Progressive learning** (the paper's progressive scheme; release ``DARTS-space/train_search.py``):
partial channels (K = ``edge.partial_channels`` in the first stage) and, at the start of each epoch in
``drnas.stage_epochs``, the ops of every edge pruned to the ``stage_keep_ops`` with the largest
``alpha`` and the edges widened to K = ``stage_partial_channels``
(:class:`ProgressiveStages`, a stage hook). Pruned ops are masked in the weights (never derived)
and removed from the edges (never computed).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config
from ..errors import UserError
from ..nn.mixed import MixedEdge, Weighting
from ..runtime.callbacks import Callback, register_method_callbacks
from .regularizers import Regularizer

DEFAULTS = {
    "reg": "l2",                 # l2 (release default: Adam weight decay on alpha) | kl (to the Dir(1) anchor) | none
    "reg_scale": 1.0e-3,         # lambda of the regularizer (release --reg_scale, both spaces)
    "stage_epochs": [],          # progressive learning: epochs (0-based) that start a new stage (release: [25])
    "stage_partial_channels": [],  # K from each of those epochs on (release: [4]; stage 1's K is edge.partial_channels)
    "stage_keep_ops": [],        # ops kept per edge at each of those epochs, by alpha (release: [4])
}
REGS = ("l2", "kl", "none")


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """``beta = ELU(alpha) + 1``: positive, linear above 0 (release ``utils.process_step_vector``)."""
    return F.elu(alpha) + 1.0


def masked_dirichlet_kl(beta: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per row, ``KL(Dir(beta_kept) || Dir(1, ..., 1))`` over the kept entries (``keep`` 0/1), closed form:
    ``lnG(b0) - sum lnG(b_i) - lnG(n) + sum (b_i - 1)(psi(b_i) - psi(b0))``, ``b0 = sum b_i``, n kept.
    Masks instead of indexing: no host sync, and all rows in one call."""
    b0 = (beta * keep).sum(-1)
    n = keep.sum(-1)
    terms = keep * (-torch.lgamma(beta) + (beta - 1.0) * (torch.digamma(beta) - torch.digamma(b0)[..., None]))
    return torch.lgamma(b0) - torch.lgamma(n) + terms.sum(-1)


class DirichletWeighting(Weighting):
    """DrNAS' Dirichlet op weights (see the module docstring); ``keep_<kind>`` (0/1 buffers, in the
    checkpoint) masks the ops progressive learning pruned."""

    stochastic = True  # a fresh sample on every training forward

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets):
        super().__init__()
        self.arch = [arch]  # a reference, not a submodule: the supernet owns the parameters
        self.kinds = tuple(kinds)
        for kind in self.kinds:
            self.register_buffer(f"keep_{kind}", torch.ones_like(arch[f"alpha_{kind}"], requires_grad=False))

    @staticmethod
    def regularizers_from_config(cfg: dict) -> list[Regularizer]:
        reg = cfg["drnas"]["reg"]
        return [] if reg == "none" else [DirichletRegularizer(reg, cfg["drnas"]["reg_scale"])]

    @staticmethod
    def validate(cfg: dict) -> None:
        d, epochs = cfg["drnas"], cfg["epochs"]
        config.check_choice("drnas.reg", d["reg"], REGS)
        config.check(not isinstance(d["reg_scale"], bool) and d["reg_scale"] >= 0,
                     f"drnas.reg_scale must be a number >= 0, got {d['reg_scale']!r}")
        at, ks, keeps = d["stage_epochs"], d["stage_partial_channels"], d["stage_keep_ops"]
        config.check(len(at) == len(ks) == len(keeps),
                     f"drnas.stage_epochs, stage_partial_channels and stage_keep_ops need one entry per stage, "
                     f"got {len(at)}, {len(ks)} and {len(keeps)}")
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in [*at, *ks, *keeps])
        config.check(ints, "drnas.stage_epochs, stage_partial_channels and stage_keep_ops must be lists of integers")
        config.check(all(0 < a < b for a, b in zip(at, [*at[1:], epochs])),
                     f"drnas.stage_epochs={at} must increase within 1..epochs-1 (epochs={epochs}): "
                     "lower them, or set drnas.stage_epochs=[] (no progressive learning)")
        config.check(all(k >= 1 for k in ks), f"drnas.stage_partial_channels={ks} must be >= 1 (1 = all channels)")
        num_ops = len(cfg["space"].get("ops", ())) or max(keeps, default=1)
        config.check(all(a >= b >= 1 for a, b in zip([num_ops, *keeps], keeps)),
                     f"drnas.stage_keep_ops={keeps} must not increase and stay within 1..{num_ops} (the ops of an edge)")

    # --- weights ---
    def forward(self, kind: str) -> torch.Tensor:
        """``[edges, ops]``: a ``Dir(beta)`` sample (training) or its mean (eval), pruned ops 0."""
        beta, keep = concentration(self.arch[0][f"alpha_{kind}"]), getattr(self, f"keep_{kind}")
        if self.training:  # rsample: pathwise gradient; the pruned ops' share is dropped and the rest
            # renormalized, which is Dir(beta_kept) by the aggregation property (release process_step_vector)
            w = torch.distributions.Dirichlet(beta, validate_args=False).rsample() * keep
        else:
            w = beta * keep
        return w / w.sum(-1, keepdim=True)

    # --- progressive learning ---
    @torch.no_grad()
    def prune(self, kind: str, keep_ops: int) -> torch.Tensor:
        """Keep, per edge, the ``keep_ops`` still-kept ops with the largest ``alpha`` (release
        ``utils.prune``; ties to the earlier op); returns the new 0/1 mask."""
        keep = getattr(self, f"keep_{kind}")
        score = self.arch[0][f"alpha_{kind}"].detach().masked_fill(keep == 0, float("-inf"))
        top = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :keep_ops]
        keep.copy_(torch.zeros_like(keep).scatter_(1, top, 1.0))
        return keep.clone()

    @torch.no_grad()
    def set_keep(self, kind: str, mask) -> None:
        getattr(self, f"keep_{kind}").copy_(torch.as_tensor(mask))

    def kl(self) -> torch.Tensor:
        """``sum KL(Dir(beta_kept) || Dir(1))`` over edges and cell types (release ``_get_kl_reg``)."""
        return sum(masked_dirichlet_kl(concentration(self.arch[0][f"alpha_{k}"]), getattr(self, f"keep_{k}")).sum()
                   for k in self.kinds)

    def metrics(self) -> dict:
        return {"drnas_ops_per_edge": int(getattr(self, f"keep_{self.kinds[0]}")[0].sum())}


class DirichletRegularizer(Regularizer):
    """The paper's ``lambda d(beta, anchor)`` in the architecture loss: ``l2``, ``reg_scale / 2 *
    sum alpha^2`` over the searched ops (the gradient of the release's Adam ``weight_decay=reg_scale``),
    or ``kl``, ``reg_scale * KL(Dir(beta) || Dir(1))`` (:meth:`DirichletWeighting.kl`)."""

    def __init__(self, reg: str, scale: float):
        super().__init__()
        self.reg, self.scale = reg, float(scale)

    def forward(self, supernet: nn.Module) -> torch.Tensor:
        w = supernet.weighting
        if self.reg == "kl":
            return self.scale * w.kl()
        return 0.5 * self.scale * sum((w.arch[0][f"alpha_{k}"] ** 2 * getattr(w, f"keep_{k}")).sum() for k in w.kinds)

    def extra_repr(self) -> str:
        return f"{self.reg}, reg_scale={self.scale}"


# --- progressive learning: the stage hook --------------------------------------------------------

@torch.no_grad()
def probe_edges(model: nn.Module, x: torch.Tensor) -> dict[MixedEdge, tuple[torch.Tensor, int]]:
    """Every mixed edge of ``model`` with the eval-mode weight row it gets and its input channels,
    from one forward on ``x`` (a row's pruned ops are exactly 0): no space-specific edge map."""
    seen = {}

    def record(edge, args):  # returns None: the forward's arguments stay as they are
        seen.setdefault(edge, (args[1].detach().cpu(), int(args[0].shape[1])))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, MixedEdge)]
    training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return seen


class ProgressiveStages(Callback):
    """DrNAS progressive learning as a stage hook: at the start of epoch ``e`` in ``stages``
    (``{e: (K, keep_ops)}``), prune each edge to ``keep_ops`` ops by ``alpha``, then widen it to K
    (moving the SGD momentum along, as the release's ``configure_optimizer``). The masks chosen are
    checkpointed: a resume replays the same pruning (it depends on the trained ``alpha``), and the
    widening draws from a generator seeded by (seed, epoch)."""

    runs_on_every_rank = True

    def __init__(self, stages: dict[int, tuple[int, int]], seed: int, stage_warmup: int = 0):
        self.stages, self.seed, self.stage_warmup = dict(stages), int(seed), int(stage_warmup)
        self.masks: dict[int, dict[str, list]] = {}

    def state_dict(self) -> dict:
        return {"masks": {str(e): m for e, m in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.masks = {int(e): m for e, m in state.get("masks", {}).items()}

    def _probe(self, searcher):
        x, _ = next(iter(searcher.val_batches.epoch(0)))
        edges = probe_edges(searcher.model, x[:2])
        if not edges:
            raise UserError(f"drnas.stage_epochs needs mixed edges to prune and widen; the {searcher.space.name} "
                            "space's supernet has none: set drnas.stage_epochs=[]")
        return edges

    def on_start(self, searcher) -> None:
        """Refuse, before any training, a stage K some edge cannot take."""
        edges = self._probe(searcher)
        for epoch, (k, _) in sorted(self.stages.items()):
            if epoch >= searcher.start_epoch:
                for edge, (_, channels) in edges.items():
                    problem = edge.widen_problem(k, channels)
                    if problem:
                        raise UserError(f"drnas.stage_partial_channels: {problem} at epoch {epoch}; choose a K that fits")

    def on_epoch_start(self, searcher, epoch: int) -> None:
        # the release passes each stage its own epoch count, and its architecture step waits for
        # epoch 10 of every stage: alpha frozen for the first ``warmup_epochs`` of each later stage too
        if any(0 <= epoch - start < self.stage_warmup for start in self.stages):
            searcher.freeze_arch = True
        if epoch not in self.stages:
            return
        k, keep_ops = self.stages[epoch]
        weighting = searcher.model.weighting
        saved = searcher.callback_states.get(self.state_key, {}).get("masks", {}) if searcher.replaying else {}
        for kind in weighting.kinds:
            if str(epoch) in saved:  # a resume: the mask the run chose from the alpha it had then
                weighting.set_keep(kind, saved[str(epoch)][kind])
            else:
                weighting.prune(kind, keep_ops)
        self.masks[epoch] = {kind: getattr(weighting, f"keep_{kind}").cpu().tolist() for kind in weighting.kinds}
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        momentum = getattr(searcher, "w_opt", None)
        for edge, (row, channels) in self._probe(searcher).items():
            edge.prune_ops([i for i in edge.active if row[i] > 0])
            if edge.partial != k:
                for old, new, expand in edge.widen(k, channels, generator):
                    buffer = momentum.state.get(old, {}).get("momentum_buffer") if momentum is not None else None
                    if buffer is not None:
                        momentum.state[new] = {"momentum_buffer": expand(buffer)}

    def on_record(self, searcher, record: dict) -> None:
        edge = next((m for m in searcher.model.modules() if isinstance(m, MixedEdge)), None)
        if edge is not None:
            record["drnas_partial_channels"] = edge.partial


def stage_hooks(cfg: dict) -> list:
    d = cfg.get("drnas", {})  # a partial config (callbacks built by hand) has no stages
    if cfg.get("edge", {}).get("weighting") != "dirichlet" or not d.get("stage_epochs"):
        return []
    return [ProgressiveStages(dict(zip(d["stage_epochs"], zip(d["stage_partial_channels"], d["stage_keep_ops"]))),
                              cfg["seed"], stage_warmup=cfg["warmup_epochs"])]


def validate_section(cfg: dict) -> None:
    """The ``drnas`` keys configure DrNAS alone: checked with ``edge.weighting: dirichlet``, refused
    when set for another weighting (they would be ignored)."""
    if cfg["edge"]["weighting"] == "dirichlet":
        DirichletWeighting.validate(cfg)
        return
    changed = [k for k, v in cfg["drnas"].items() if v != DEFAULTS[k]]
    if changed:
        raise UserError(f"drnas.{changed[0]}={cfg['drnas'][changed[0]]} is set, but edge.weighting is "
                        f"{cfg['edge']['weighting']} and the drnas keys configure DrNAS only: set "
                        "edge.weighting=dirichlet, or drop the drnas keys")


def check_space(cfg: dict) -> None:
    """Progressive learning changes K: refused on a space whose supernet takes no partial channels."""
    if cfg["edge"]["weighting"] != "dirichlet" or not cfg["drnas"]["stage_epochs"]:
        return
    space = config.SEARCH.named().get("space", {}).get(cfg["space"]["name"])
    support = getattr(space, "supports", None)
    if support is not None and not support.partial_channels:
        raise UserError(f"the {space.name} space cannot use drnas.stage_epochs={cfg['drnas']['stage_epochs']} "
                        "(DrNAS progressive learning changes partial channels): set drnas.stage_epochs=[]")


config.SEARCH.register("drnas", DEFAULTS, validate=validate_section, owner=__name__)
config.SEARCH.register_check("drnas stages fit the space", check_space, owner=__name__)
register_method_callbacks("drnas", stage_hooks)

"""SI-VDNAS (Wang et al., IJCAI 2020): semi-implicit variational dropout over operations and edges.

``edge.weighting: si_vdnas`` (options in the ``vdnas`` config section). Every mixed edge ``(i, j)``
and every op ``o`` on it gets a dropout variance, and a node is (Eq. 12-13)::

    h_j = sum_{i<j} phi_ij * zeta_ij * sum_o w_ij^o * xi_ij^o * o(x_i)

* ``w`` (``alpha_<kind>``, ``[edges, ops]``) and ``phi`` (``beta_<kind>``, ``[edges]``) are the op and
  edge weights: a softmax over the ops of an edge and over the edges entering a node (the paper
  builds on PC-DARTS edge normalization, Sec. 3.3; it does not say whether they pass through a
  softmax), or used as they are with ``parametrization: raw``.
* ``xi_o = Phi_o (1 + sqrt(delta_o) eps_o)`` and ``zeta_e = Phi_e (1 + sqrt(sigma_e) eps_e)``: the
  Gaussian dropout noise by the additive reparameterization (Sec. 2.2), ``eps ~ N(0, 1)``: one
  ``eps`` per sample per (edge, op), drawn anew for every cell (``granularity: cell``; the weights
  are ``[edges, ops, B, 1, 1, 1]`` and the supernet asks for them once per cell, ``per_cell``), the
  same in every cell (``sample``), or one per forward (``batch``). ``cell`` is Gaussian dropout as
  Sec. 2.2 defines it, noise on each layer's input per example (``xi in R^{M x I}``), i.e. the local
  reparameterization of Kingma et al. (2015): every cell is a layer of its own whose mixing gets
  independent per-example noise, which keeps the gradient's variance falling with the batch size.
  One draw for all cells instead multiplies a sample's activations by the same factors in every
  cell, ``(1 + sqrt(delta) eps)^cells``, and the supernet hardly trains (docs/results/2026-12-07-
  si-vdnas-as-published.md). The variances are kept positive
  as ``log_delta_<kind>`` and ``log_sigma_<kind>``, starting at dropout rate ``init_p`` (0.01,
  not given: a near-deterministic start as in variational-dropout practice; at 0.1 the noise on
  every op and edge, relative std ~0.47, keeps the supernets from training): ``delta = p / (1 - p)``.
* ``Phi_o ~ Bern(1 / (1 + delta_o))`` and ``Phi_e ~ Bern(1 / (1 + sigma_e))`` (Alg. 1 line 3, K = N = 1):
  sampled once per search iteration (:meth:`begin_step`) from a generator of their own and held
  for that iteration's architecture and weight steps; ``eps`` is fresh on every forward (from the
  global generator, so the estimators' seeded re-evaluations see the same sample). The keep
  probability ``1 / (1 + delta)`` is sampled, not differentiated (the paper gives no estimator).
* Eval mode uses the expectation: ``w * phi * E[xi] * E[zeta]`` with ``E[xi] = 1 / (1 + delta)``.

KL (Eq. 11, 14, 17, 18; with ``eta`` at its optimum Eq. 10 it no longer depends on the weights)::

    KL = sum_e Phi_e * 1/2 log(1 + (1 - lambda)^2 / sigma_e) + sum_{e,o} Phi_o * 1/2 log(1 + (1 - lambda)^2 / delta_o)

added to the architecture loss (never the weight step's: it has no network weight in it) as
``kl_weight * KL`` next to the mean cross entropy, ``kl_weight`` 1 by default: the KL as Alg. 1 adds
it, unscaled. Eq. 5 sums the data term over the N examples, which with a mean cross entropy is
``KL / N_val`` (``kl_weight: null``); but under Adam (lr 3e-4, 35 x 391 architecture steps) that KL
is far below the data gradient's noise, the keep probabilities stay near 0.9 and the final sample
keeps ~80 of 98 pairs per cell (16.6 M parameters at C=36, 20 cells; the paper's is 3.6 M). The
paper's size needs keep probabilities of about 0.3-0.4, which Adam reaches only when the KL
dominates the step (any weight above ~1e-2 does; 1 is the unscaled reading). ``(1 - lambda)^2`` starts at
1 (the ARD prior) and is multiplied by ``anneal`` (0.95) every epoch (``anneal_every: epoch``) or
every iteration as Alg. 1 prints it (``step``).

Variants (Table 3): ``si`` the above; ``h`` (H-VDNAS) hierarchical without the semi-implicit
part: no Bernoulli masks (``Phi = 1``) and ``lambda = 0``, i.e. Gaussian dropout with the ARD KL
``1/2 log(1 + 1/delta)`` on ops and edges; ``v`` (V-VDNAS) the same on the ops only (no ``phi``,
no ``sigma``, no edge terms).

Derivation (:meth:`VariationalDropoutWeighting.keep_masks`): ``sample`` keeps what the final
Bernoulli sample keeps (Alg. 1 returns it), ``deterministic`` keeps where the keep probability is
above 1/2 (``delta < 1``); either may keep several ops per edge and any number of edges per node.
An edge that keeps no op keeps its most probable op, a node that keeps no edge its most probable
edge (not in the paper).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config
from ..errors import UserError
from ..nn.mixed import Weighting
from .regularizers import Regularizer

DEFAULTS = {
    "variant": "si",             # si (SI-VDNAS) | h (H-VDNAS: no Bernoulli, lambda = 0) | v (V-VDNAS: also no edge terms)
    "parametrization": "softmax",  # softmax (w over an edge's ops, phi over a node's edges) | raw
    "granularity": "cell",       # cell: one Gaussian eps per sample per (edge, op) per cell | sample: the same in every cell | batch: one per forward
    "init_p": 0.01,              # initial dropout rate p of every op and edge: delta = p / (1 - p)
    "anneal": 0.95,              # (1 - lambda)^2 <- anneal * (1 - lambda)^2
    "anneal_every": "epoch",     # epoch | step (Alg. 1 as printed)
    "kl_weight": 1.0,            # the KL's weight next to the mean CE (calibrated: see below); null: 1 / (search-val examples)
    "derivation": "auto",        # auto (sample for si, deterministic for h and v) | sample | deterministic
}

#: Defaults of earlier releases: the config.yaml of a run of another method holds every key, at the
#: default of its day, so these values are not refused as "set" (they configure nothing there).
EARLIER_DEFAULTS = {"granularity": ("sample",), "init_p": (0.1,), "kl_weight": (None,)}

VARIANTS = ("si", "h", "v")
GRANULARITIES = ("cell", "sample", "batch")
DERIVATIONS = ("sample", "deterministic")


# --- the closed forms (Eq. 9-11), also used by the tests --------------------------------------

def gaussian_kl(delta, lam, eta, gamma=1.0):
    """Eq. 9 (corrected): ``KL(N(gamma, gamma^2 delta) || N(lam gamma, 1 / eta))``
    ``= -1/2 log(eta gamma^2 delta) + eta gamma^2 / 2 * ((1 - lam)^2 + delta) - 1/2``.
    The extraction prints ``2 eta gamma^2``; ``eta gamma^2 / 2`` is the Gaussian KL and the only
    factor that gives Eq. 10 and 11."""
    delta, lam, eta, gamma = map(_tensor, (delta, lam, eta, gamma))
    g2 = gamma * gamma
    return -0.5 * torch.log(eta * g2 * delta) + 0.5 * eta * g2 * ((1 - lam) ** 2 + delta) - 0.5


def optimal_eta(delta, lam, gamma=1.0):
    """Eq. 10: the prior precision that minimizes :func:`gaussian_kl`."""
    delta, lam, gamma = map(_tensor, (delta, lam, gamma))
    return 1.0 / (gamma * gamma * ((1 - lam) ** 2 + delta))


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def kl_term(log_variance: torch.Tensor, prior_scale: float) -> torch.Tensor:
    """Eq. 11 per op (or edge): ``1/2 log(1 + (1 - lambda)^2 / delta)`` with ``prior_scale`` =
    ``(1 - lambda)^2`` and ``delta = exp(log_variance)``, computed stably as a softplus."""
    return 0.5 * F.softplus(math.log(prior_scale) - log_variance)


def grouped_softmax(x: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Softmax of ``x`` within the entries that share a group index (edges entering one node)."""
    e = (x - x.detach().max()).exp()
    denom = torch.zeros(num_groups, dtype=e.dtype, device=e.device).index_add(0, groups, e)
    return e / denom[groups]


def select_architecture(op_keep: torch.Tensor, edge_keep: torch.Tensor | None, op_prob: torch.Tensor,
                        edge_prob: torch.Tensor | None, targets, never=()) -> torch.Tensor:
    """The bool ``[edges, ops]`` mask of the (op, edge) pairs a derived cell keeps.

    ``op_keep`` / ``edge_keep``: what the derivation keeps (a Bernoulli sample or keep
    probability > 1/2); ``edge_keep`` None (V-VDNAS, no edge terms): an edge is kept when it
    keeps an op. Ops at the indices in ``never`` are never kept. Fallbacks (the paper says
    nothing): an edge that keeps no op keeps the op with the largest keep probability ``op_prob``;
    a node that keeps no edge keeps the edge with the largest ``edge_prob`` (without edge terms:
    the edge whose best op is most probable). Ties go to the earlier op or edge.
    """
    ops = op_keep.detach().cpu().bool().clone()
    prob = op_prob.detach().cpu().double().clone()
    never = list(never)
    if never:
        ops[:, never] = False
        prob[:, never] = -1.0
    edges = ops.any(dim=1) if edge_keep is None else edge_keep.detach().cpu().bool().clone()
    rank = prob.max(dim=1).values if edge_prob is None else edge_prob.detach().cpu().double()
    targets = torch.as_tensor(list(targets))
    for target in targets.unique().tolist():
        incoming = (targets == target).nonzero().flatten()
        if not edges[incoming].any():
            edges[incoming[rank[incoming].argmax()]] = True
    empty = ~ops.any(dim=1)
    rows = empty.nonzero().flatten()
    ops[rows, prob[rows].argmax(dim=1)] = True
    return ops & edges[:, None]


# --- the weighting ------------------------------------------------------------------------------

class VariationalDropoutWeighting(Weighting):
    """SI-VDNAS and its H-/V-VDNAS ablations as a weighting (see the module docstring)."""

    stochastic = True  # a fresh sample on every training forward
    derivation_keys = ("vdnas.derivation",)

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets, *, variant: str = "si",
                 parametrization: str = "softmax", granularity: str = "cell", init_p: float = 0.01,
                 anneal: float = 0.95, anneal_every: str = "epoch", derivation: str = "auto",
                 seed: int | None = None):
        super().__init__()
        self.arch = [arch]  # a reference, not a submodule: the supernet owns the parameters
        self.kinds = tuple(kinds)
        targets = torch.as_tensor(list(edge_targets))
        self.register_buffer("targets", targets, persistent=False)
        self.num_nodes = int(targets.max()) + 1
        self.variant, self.parametrization = variant, parametrization
        self.semi_implicit = variant == "si"   # Bernoulli masks and the annealed prior
        self.hierarchical = variant != "v"     # edge weights and edge dropout
        self.per_sample = granularity in ("cell", "sample")
        self.per_cell = granularity == "cell"  # the supernet draws the weights once per cell
        self.normalized = parametrization == "softmax"  # raw weights have no row total to keep
        self.anneal, self.anneal_every = float(anneal), anneal_every
        if derivation == "auto":
            derivation = "sample" if self.semi_implicit else "deterministic"
        self.derivation = derivation
        # Without the Bernoulli masks (H-, V-VDNAS) there is no sample to derive from.
        self.derivations = ((derivation, *(d for d in DERIVATIONS if d != derivation)) if self.semi_implicit
                            else ("deterministic",))
        self.steps, self.epoch = 0, 0
        if seed is None:  # reproducible from the global seed
            seed = int(torch.randint(0, 2**62, ()).item())
        self._generator = torch.Generator().manual_seed(int(seed))

        log_var = math.log(init_p / (1.0 - init_p))
        in_degree = torch.bincount(targets, minlength=self.num_nodes)[targets].float()
        names = []
        for kind in self.kinds:
            alpha = arch[f"alpha_{kind}"]
            num_edges, num_ops = alpha.shape
            if parametrization == "raw":  # start where the softmax starts: equal weights
                with torch.no_grad():
                    alpha.add_(1.0 / num_ops)
            arch[f"log_delta_{kind}"] = nn.Parameter(torch.full((num_edges, num_ops), log_var))
            self.register_buffer(f"op_mask_{kind}", torch.ones(num_edges, num_ops))
            names.append(f"log_delta_{kind}")
            if self.hierarchical:
                beta = torch.zeros(num_edges) if parametrization == "softmax" else 1.0 / in_degree
                arch[f"beta_{kind}"] = nn.Parameter(beta)
                arch[f"log_sigma_{kind}"] = nn.Parameter(torch.full((num_edges,), log_var))
                self.register_buffer(f"edge_mask_{kind}", torch.ones(num_edges))
                names.append(f"log_sigma_{kind}")
        self.no_weight_decay = tuple(names)

    # --- configuration ---
    @classmethod
    def from_config(cls, cfg: dict):
        options = {k: v for k, v in cfg["vdnas"].items() if k != "kl_weight"}  # the KL's: see SIVDNASKL
        # The masks' generator gets a seed of its own, derived from the run's.
        return functools.partial(cls, **options, seed=(cfg["seed"] * 1_000_003 + 12) % 2**63)

    @staticmethod
    def regularizers_from_config(cfg: dict) -> list[Regularizer]:
        """What this weighting brings to the architecture loss: its KL (:class:`SIVDNASKL`)."""
        return [SIVDNASKL(cfg["vdnas"]["kl_weight"])]

    @staticmethod
    def validate(cfg: dict) -> None:
        v = cfg["vdnas"]
        checks = [
            (v["variant"] in VARIANTS, f"vdnas.variant must be one of {', '.join(VARIANTS)} (SI-, H-, V-VDNAS), got {v['variant']!r}"),
            (v["parametrization"] in ("softmax", "raw"), f"vdnas.parametrization must be softmax or raw, got {v['parametrization']!r}"),
            (v["granularity"] in GRANULARITIES, f"vdnas.granularity must be one of {', '.join(GRANULARITIES)}, got {v['granularity']!r}"),
            (0.0 < v["init_p"] < 1.0, f"vdnas.init_p is a dropout rate in (0, 1), got {v['init_p']}"),
            (0.0 < v["anneal"] <= 1.0, f"vdnas.anneal must be in (0, 1] (the paper: 0.95), got {v['anneal']}"),
            (v["anneal_every"] in ("epoch", "step"), f"vdnas.anneal_every must be epoch or step, got {v['anneal_every']!r}"),
            (v["derivation"] in ("auto", *DERIVATIONS), f"vdnas.derivation must be auto, sample or deterministic, got {v['derivation']!r}"),
        ]
        w = v["kl_weight"]
        checks.append((w is None or (not isinstance(w, bool) and isinstance(w, (int, float)) and w >= 0),
                       f"vdnas.kl_weight must be null (1 / search-val examples) or a number >= 0, got {w!r}"))
        checks.append((v["variant"] == "si" or v["derivation"] != "sample",
                       f"vdnas.derivation=sample needs the Bernoulli masks of variant si; "
                       f"{v['variant']}-VDNAS derives deterministically (use derivation auto or deterministic)"))
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    # --- per-step state ---
    def _param(self, name: str) -> torch.Tensor:
        return self.arch[0][name]

    def op_keep(self, kind: str) -> torch.Tensor:
        """Keep probabilities ``1 / (1 + delta)`` of the ops, ``[edges, ops]``."""
        return torch.sigmoid(-self._param(f"log_delta_{kind}"))

    def edge_keep(self, kind: str) -> torch.Tensor | None:
        """Keep probabilities ``1 / (1 + sigma)`` of the edges, ``[edges]`` (None without edge terms)."""
        return torch.sigmoid(-self._param(f"log_sigma_{kind}")) if self.hierarchical else None

    @property
    def prior_scale(self) -> float:
        """``(1 - lambda)^2`` of the current epoch or iteration (1: the ARD prior, lambda = 0)."""
        if not self.semi_implicit:
            return 1.0
        return self.anneal ** (self.epoch if self.anneal_every == "epoch" else max(self.steps - 1, 0))

    @torch.no_grad()
    def begin_step(self) -> None:
        """Sample this iteration's Bernoulli masks (held until the next call)."""
        self.steps += 1
        if not self.semi_implicit:
            return
        masks, probs = [], []
        for kind in self.kinds:
            masks.append(getattr(self, f"op_mask_{kind}"))
            probs.append(self.op_keep(kind))
            if self.hierarchical:
                masks.append(getattr(self, f"edge_mask_{kind}"))
                probs.append(self.edge_keep(kind))
        # One draw on the CPU generator for all masks: the same masks on every device, and on
        # CUDA an asynchronous copy instead of a generator per device.
        u = torch.rand(sum(m.numel() for m in masks), generator=self._generator)
        device = masks[0].device
        if device.type == "cuda":
            u = u.pin_memory().to(device, non_blocking=True)
        for mask, prob, part in zip(masks, probs, u.split([m.numel() for m in masks])):
            mask.copy_(part.view_as(mask) < prob)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = int(epoch)

    def get_extra_state(self) -> dict:
        return {"generator": self._generator.get_state(), "steps": self.steps, "epoch": self.epoch}

    def set_extra_state(self, state: dict) -> None:
        self._generator.set_state(state["generator"])
        self.steps, self.epoch = int(state["steps"]), int(state["epoch"])

    # --- weights ---
    def mean_weights(self, kind: str) -> torch.Tensor:
        """``w * phi``, ``[edges, ops]``: the weights before dropout."""
        w = self._param(f"alpha_{kind}")
        if self.parametrization == "softmax":
            w = torch.softmax(w, dim=-1)
        if self.hierarchical:
            phi = self._param(f"beta_{kind}")
            if self.parametrization == "softmax":
                phi = grouped_softmax(phi, self.targets, self.num_nodes)
            w = w * phi[:, None]
        return w

    def reference_weights(self, kind: str) -> torch.Tensor | None:
        """In training mode the mean weights (a sampled row may sum to 0); None in eval mode."""
        return self.mean_weights(kind) if self.training else None

    def forward(self, kind: str, batch_size: int | None = None) -> torch.Tensor:
        w = self.mean_weights(kind)
        if not self.training:  # the expectation of the dropout noise
            if not self.semi_implicit:
                return w
            keep = self.op_keep(kind)
            return w * (keep * self.edge_keep(kind)[:, None] if self.hierarchical else keep)
        per_sample = self.per_sample and batch_size is not None
        tail = (batch_size,) if per_sample else ()
        num_edges, num_ops = w.shape
        log_delta = self._param(f"log_delta_{kind}")
        eps = torch.randn((num_edges, num_ops, *tail), device=w.device, dtype=w.dtype)
        factor = 1.0 + (0.5 * log_delta).exp().view(num_edges, num_ops, *(1,) * len(tail)) * eps
        if self.hierarchical:
            log_sigma = self._param(f"log_sigma_{kind}")
            eps_edge = torch.randn((num_edges, 1, *tail), device=w.device, dtype=w.dtype)
            factor = factor * (1.0 + (0.5 * log_sigma).exp().view(num_edges, 1, *(1,) * len(tail)) * eps_edge)
        if self.semi_implicit:
            mask = getattr(self, f"op_mask_{kind}")
            if self.hierarchical:
                mask = mask * getattr(self, f"edge_mask_{kind}")[:, None]
            factor = factor * mask.view(num_edges, num_ops, *(1,) * len(tail))
        out = w.view(num_edges, num_ops, *(1,) * len(tail)) * factor
        return out.view(num_edges, num_ops, batch_size, 1, 1, 1) if per_sample else out

    # --- the KL ---
    def kl(self) -> torch.Tensor:
        """Eq. 14 with Eq. 17-18, summed over the cell types (unscaled)."""
        scale = self.prior_scale
        total = None
        for kind in self.kinds:
            op_terms = kl_term(self._param(f"log_delta_{kind}"), scale)
            if self.semi_implicit:
                op_terms = op_terms * getattr(self, f"op_mask_{kind}")
            part = op_terms.sum()
            if self.hierarchical:
                edge_terms = kl_term(self._param(f"log_sigma_{kind}"), scale)
                if self.semi_implicit:
                    edge_terms = edge_terms * getattr(self, f"edge_mask_{kind}")
                part = part + edge_terms.sum()
            total = part if total is None else total + part
        return total

    # --- derivation ---
    def selection_scores(self, kind: str) -> torch.Tensor:
        """The ops' keep probabilities (what the NAS-Bench-201 lookup cell takes the argmax of)."""
        return self.op_keep(kind)

    def keep_masks(self, kind: str, derivation: str | None = None, never=()) -> torch.Tensor:
        derivation = derivation or self.derivation
        if derivation not in self.derivations:
            raise UserError(f"derivation {derivation!r} is not available for {self.variant}-VDNAS "
                            f"(it has {', '.join(self.derivations)})")
        op_prob, edge_prob = self.op_keep(kind), self.edge_keep(kind)
        if derivation == "sample":
            ops = getattr(self, f"op_mask_{kind}") > 0.5
            edges = getattr(self, f"edge_mask_{kind}") > 0.5 if self.hierarchical else None
        else:
            ops = op_prob > 0.5
            edges = edge_prob > 0.5 if self.hierarchical else None
        return select_architecture(ops, edges, op_prob, edge_prob, self.targets.cpu(), never)

    @torch.no_grad()
    def metrics(self) -> dict:
        def rows(t):
            return [[round(float(v), 5) for v in row] for row in t.detach().float().cpu().tolist()]

        out = {"vdnas_lambda": round(1.0 - math.sqrt(self.prior_scale), 6), "vdnas_kl": round(float(self.kl()), 5),
               "keep_ops": {kind: rows(self.op_keep(kind)) for kind in self.kinds}}
        if self.hierarchical:
            out["keep_edges"] = {kind: rows(self.edge_keep(kind)[None])[0] for kind in self.kinds}
        return out

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, parametrization={self.parametrization}, "
                f"granularity={'cell' if self.per_cell else 'sample' if self.per_sample else 'batch'}, "
                f"anneal={self.anneal} per {self.anneal_every}, "
                f"derivation={self.derivation}")



def validate_section(cfg: dict) -> None:
    """The ``vdnas`` keys configure SI-VDNAS alone: checked when ``edge.weighting`` is ``si_vdnas``,
    refused when set for another weighting (they would be ignored)."""
    if cfg["edge"]["weighting"] == "si_vdnas":
        VariationalDropoutWeighting.validate(cfg)
        return
    changed = [k for k, v in cfg["vdnas"].items() if v != DEFAULTS[k] and v not in EARLIER_DEFAULTS.get(k, ())]
    if changed:
        key = changed[0]
        raise UserError(f"vdnas.{key}={cfg['vdnas'][key]} is set, but edge.weighting is {cfg['edge']['weighting']} "
                        "and the vdnas keys configure SI-VDNAS only: set edge.weighting=si_vdnas, or drop the vdnas keys")


config.SEARCH.register("vdnas", DEFAULTS, validate=validate_section, nullable={"kl_weight": float}, owner=__name__)


# --- the KL as an architecture-loss regularizer --------------------------------------------------

class SIVDNASKL(Regularizer):
    """SI-VDNAS' KL (Eq. 14) in the architecture loss: ``kl_weight * KL`` (1 by default, see the
    module docstring) or ``KL / N_val`` (``kl_weight`` None: Eq. 5 sums the data term over the
    search-val examples, the cross entropy here is a mean). The supernet's weighting must be a :class:`VariationalDropoutWeighting`
    (its :meth:`~VariationalDropoutWeighting.kl` holds the masks and the annealed prior)."""

    def __init__(self, kl_weight: float | None = None):
        super().__init__()
        self.kl_weight, self.num_val = kl_weight, None

    def set_search_data(self, num_train: int, num_val: int) -> None:
        self.num_val = int(num_val)

    def forward(self, supernet: nn.Module) -> torch.Tensor:
        kl = supernet.weighting.kl()
        if self.kl_weight is not None:
            return self.kl_weight * kl
        if self.num_val is None:
            raise RuntimeError("the SI-VDNAS KL is divided by the number of search-val examples: call "
                               "supernet.set_search_data(num_train, num_val) first, or set vdnas.kl_weight")
        return kl / self.num_val

    def extra_repr(self) -> str:
        return f"kl_weight={self.kl_weight}" if self.kl_weight is not None else "KL / N_val"

"""SDARTS (Chen & Hsieh, ICML 2020): the weight step at perturbed architecture weights.

DARTS trains the weights at the current architecture weights ``A`` only, so the validation loss
is sharp around ``A`` and the discretized cell loses accuracy. SDARTS trains them for a whole
neighbourhood of ``A`` instead (Sec. 3 of SDARTS; α's own step is DARTS', unperturbed):

* **SDARTS-RS** (``perturb.kind: random``), random smoothing:
  ``w* = argmin_w E_{delta ~ U[-eps, eps]} L_train(w, A + delta)``: one uniform draw per weight step;
* **SDARTS-ADV** (``adversarial``), adversarial training:
  ``w* = argmin_w max_{||delta||_inf <= eps} L_train(w, A + delta)``: ``delta`` from a PGD attack.

As the release does it (``attacker/perturb.py``, ``sota/cnn/train_search.py``):

* ``A`` is the softmax of α (the mixed edge's op weights), and every perturbed row is projected back
  by the release's ``clip``: clamp to [0, 1], then divide by the row's sum (a row clamped to all
  zeros puts 1 on its largest entry). The renormalization may move a row beyond the ε-box (a row
  whose ops all but one were clamped to 0 becomes one-hot); that is the release's projection.
* ``eps`` grows linearly with the epoch: ``eps_min + (eps_max - eps_min) * epoch / epochs``
  (0-based epoch: 0.03 at the first epoch, 0.2946 at the last of 50; ``epsilon_alpha`` 0.3).
* ADV: ``steps`` (7) sign-gradient ascent steps of size ``2 eps / steps`` (``Linf_SGD``), from a
  uniform random start (``random_start``), each followed by the clamp to the ε-box around ``A``
  and the projection; run in eval mode, as the release switches the network to ``eval()`` for the
  attack (BatchNorm normalizes with its running statistics and does not update them; the NoisyDARTS
  noise is off); kept only if the attack's loss is not below the unperturbed loss (else the weight
  step runs unperturbed).

The perturbation reaches the network through :meth:`noisydarts.nn.supernet.Supernet.mixing_weights`
(``model.mixing_perturbation``), for every cell type and every space whose supernet mixes through
it. Edge weights (PC-DARTS edge normalization) are left as they are: SDARTS perturbs op weights. A
weighting whose rows are not normalized (``Weighting.normalized`` False, e.g. a sigmoid) is only
clamped to [0, 1]. A stochastic weighting (one that samples its weights: SI-VDNAS, DrNAS' Dirichlet)
is refused: there is no fixed ``A`` to perturb, and a ``delta`` found for one sample would be added
to the next. It is refused when the config is resolved (its class says ``stochastic = True``).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .. import config
from ..errors import UserError
from ..nn import recompute
from .perturbation import WEIGHT_PERTURBATIONS, WeightStepPerturbation
from .weightings import WEIGHTINGS

#: The ``perturb`` config section (release defaults: ``--epsilon_alpha 0.3``, PGD 7 steps, random start).
DEFAULTS: dict = {
    "kind": "none",          # none | random (SDARTS-RS) | adversarial (SDARTS-ADV)
    "epsilon": 0.3,          # eps at the end of the linear schedule (release --epsilon_alpha)
    "epsilon_min": 0.03,     # eps at epoch 0 (release: 0.03, fixed)
    "steps": 7,              # adversarial: PGD steps of size 2 eps / steps
    "random_start": True,    # adversarial: start the attack from a uniform draw in the ε-box
}


def epsilon_at(epoch: int, epochs: int, eps_max: float, eps_min: float) -> float:
    """The release's schedule (``train_search.py``): ``eps_min + (eps_max - eps_min) * epoch / epochs``."""
    return eps_min + (eps_max - eps_min) * epoch / epochs


def project_rows(p: torch.Tensor, normalized: bool = True) -> torch.Tensor:
    """The release's ``clip`` on each row of ``[edges, ops]`` weights: clamp to [0, 1]; if the rows
    are normalized, a row of zeros gets 1 at its largest entry (taken before the clamp) and every row
    is divided by its sum."""
    q = p.clamp(0.0, 1.0)
    if not normalized:
        return q
    top = F.one_hot(p.argmax(-1), p.shape[-1]).to(q.dtype)
    q = torch.where(q.sum(-1, keepdim=True) == 0, top, q)
    return q / q.sum(-1, keepdim=True)


class SDARTSPerturbation(WeightStepPerturbation):
    """What RS and ADV share: the ε schedule, ``A`` (the unperturbed op weights) and its projection."""

    def __init__(self, epsilon: float = 0.3, epsilon_min: float = 0.03):
        self.eps_max, self.eps_min = float(epsilon), float(epsilon_min)
        self.epsilon = self.eps_min

    @classmethod
    def from_config(cls, cfg: dict) -> "SDARTSPerturbation":
        p = cfg["perturb"]
        return cls(p["epsilon"], p["epsilon_min"])

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.epsilon = epsilon_at(epoch, epochs, self.eps_max, self.eps_min)

    @staticmethod
    @torch.no_grad()
    def clean_weights(model, batch_size: int) -> dict[str, torch.Tensor]:
        """``A``: per cell type, the ``[edges, ops]`` op weights the weight step would use."""
        out = {kind: w.detach().float() for kind, (w, _) in model.mixing_weights(batch_size).items()}
        if any(w.dim() != 2 for w in out.values()):
            raise UserError("perturb.kind needs [edges, ops] op weights; this weighting samples per-sample weights: "
                            "set perturb.kind=none")
        return out

    def perturbation(self, model, x, y, amp) -> dict[str, torch.Tensor]:
        """Per cell type, ``delta`` such that ``A + delta`` are the perturbed op weights."""
        raise NotImplementedError

    @staticmethod
    def check_deterministic(model) -> None:
        """Refuse a weighting that samples its weights (``Weighting.stochastic``): ``A + delta`` would
        add a delta found for one sample to another (a supernet built by hand; configs are refused
        when resolved)."""
        if model.weighting.stochastic:
            raise UserError(f"perturb.kind (SDARTS) needs deterministic op weights; {type(model.weighting).__name__} "
                            f"samples its own every forward: set perturb.kind=none")

    @contextlib.contextmanager
    def weight_step(self, model, x, y, amp=contextlib.nullcontext()):
        model.mixing_perturbation = None
        self.check_deterministic(model)
        try:
            model.mixing_perturbation = self.perturbation(model, x, y, amp)
            yield
        finally:
            model.mixing_perturbation = None  # the architecture step and validation never see it


class RandomSmoothing(SDARTSPerturbation):
    """SDARTS-RS: ``A + delta``, ``delta ~ U[-eps, eps]`` per entry (global generator), projected."""

    def perturbation(self, model, x, y, amp):
        normalized = model.weighting.normalized
        out = {}
        for kind, a in self.clean_weights(model, len(x)).items():
            noisy = a + torch.empty_like(a).uniform_(-self.epsilon, self.epsilon)
            out[kind] = project_rows(noisy, normalized) - a
        return out


class AdversarialPerturbation(SDARTSPerturbation):
    """SDARTS-ADV: the release's L-inf PGD on the op weights (``Linf_PGD_alpha``)."""

    def __init__(self, epsilon: float = 0.3, epsilon_min: float = 0.03, steps: int = 7, random_start: bool = True):
        super().__init__(epsilon, epsilon_min)
        self.steps, self.random_start = int(steps), bool(random_start)

    @classmethod
    def from_config(cls, cfg: dict) -> "AdversarialPerturbation":
        p = cfg["perturb"]
        return cls(p["epsilon"], p["epsilon_min"], p["steps"], p["random_start"])

    def perturbation(self, model, x, y, amp):
        eps, normalized = self.epsilon, model.weighting.normalized
        step_size = 2 * eps / self.steps  # the release's Linf_SGD lr

        def loss_at(points: dict) -> torch.Tensor:
            model.mixing_perturbation = {k: points[k] - clean[k] for k in clean}
            with amp:
                return model.training_loss(x, y)[0]

        was_training = model.training
        model.eval()  # as the release: the attack's forwards neither use nor update batch statistics
        try:
            with recompute.frozen(model.parameters()):  # autograd builds only what delta's gradient needs
                clean = self.clean_weights(model, len(x))
                with torch.no_grad():
                    loss_before = loss_at(clean)
                if self.random_start:
                    point = {k: project_rows(a + torch.empty_like(a).uniform_(-eps, eps), normalized)
                             for k, a in clean.items()}
                else:
                    point = dict(clean)
                for _ in range(self.steps):
                    point = {k: p.detach().requires_grad_() for k, p in point.items()}
                    grads = torch.autograd.grad(loss_at(point), list(point.values()))
                    with torch.no_grad():
                        point = {k: project_rows(clean[k] + (p + step_size * g.sign() - clean[k]).clamp(-eps, eps),
                                                 normalized)
                                 for (k, p), g in zip(point.items(), grads)}
                with torch.no_grad():
                    loss_after = loss_at(point)
            # Kept only if the attack raised the loss (release); a tensor test: no host sync.
            keep = (loss_after >= loss_before).to(torch.float32)
            return {k: (point[k] - clean[k]) * keep for k in clean}
        finally:
            model.mixing_perturbation = None
            model.train(was_training)


def validate(cfg: dict) -> None:
    p, kinds = cfg["perturb"], tuple(WEIGHT_PERTURBATIONS)
    config.check_choice("perturb.kind", p["kind"], kinds)
    config.check(0.0 <= p["epsilon_min"] <= p["epsilon"] <= 1.0,
                 f"perturb.epsilon_min and perturb.epsilon must satisfy 0 <= epsilon_min <= epsilon <= 1 "
                 f"(op weights live in [0, 1]; the release: 0.03 and 0.3), got {p['epsilon_min']} and {p['epsilon']}")
    config.check(p["steps"] >= 1, f"perturb.steps must be >= 1 (PGD steps; the release: 7), got {p['steps']}")
    if p["kind"] != "adversarial":
        for key in ("steps", "random_start"):
            config.check(p[key] == DEFAULTS[key], f"perturb.{key} applies to perturb.kind=adversarial only: "
                                                  f"remove it or set perturb.kind=adversarial")
    if p["kind"] == "none":
        for key in ("epsilon", "epsilon_min"):
            config.check(p[key] == DEFAULTS[key], f"perturb.{key} applies only with a perturbation: "
                                                  f"set perturb.kind=random or adversarial, or remove it")


def check_weighting(cfg: dict) -> None:
    """A stochastic weighting has no fixed ``A`` to perturb: refused in one line."""
    kind, name = cfg["perturb"]["kind"], cfg["edge"]["weighting"]
    if kind != "none" and name in WEIGHTINGS and WEIGHTINGS[name].stochastic:
        raise UserError(f"perturb.kind={kind} (SDARTS) cannot perturb edge.weighting={name}: it samples its own op "
                        f"weights every forward, there is no fixed A to perturb; set perturb.kind=none or "
                        f"edge.weighting=softmax")


WEIGHT_PERTURBATIONS["random"] = RandomSmoothing.from_config
WEIGHT_PERTURBATIONS["adversarial"] = AdversarialPerturbation.from_config
config.SEARCH.register("perturb", DEFAULTS, validate=validate, owner=__name__)
config.SEARCH.register_check("sdarts_weighting", check_weighting, owner=__name__)

"""NoisyDARTS: unbiased noise on the skip connections' output during search.

Eq. 6 of NoisyDARTS replaces the skip branch of a mixed edge by ``o_skip(x + x~)`` with
``x~ ~ N(mu, sigma)``, ``mu = 0`` and ``sigma = lambda * std(x)`` (Sec. 3.3). Because the noise
has zero mean, the architecture gradient through the skip branch is unbiased in expectation
(Eq. 4), while each single step sees a perturbed skip path: that is what removes the skip
connections' unfair advantage.

Choices, following the paper and its reference release:

* ``sigma`` is ``lambda`` times the standard deviation of the whole skip output tensor of the
  batch, computed on a detached copy: the noise is a constant to autograd, so the gradient of
  the output w.r.t. its input stays the identity.
* ``distribution``: ``gaussian`` or ``uniform`` (zero-mean uniform with the same std). The
  release's uniform noise ignored std(x); here both distributions scale with std(x).
* ``mixture``: ``additive`` gives ``y + mu + sigma * eps``; ``multiplicative`` gives
  ``y * (1 + mu + lambda * eps)``. ``mu = 0`` is unbiased in both (the release's
  multiplicative runs with ``--noise_mean 1`` correspond to ``mu = 0`` here).
* ``decay: cosine`` scales the noise by ``(1 + cos(pi * epoch / epochs)) / 2``, as the release's
  ``--noise_decay``.
* A fresh sample on every forward in training mode, i.e. in the weight step and in the
  architecture step alike; the identity in eval mode (validation, derivation, evaluation).

Alternatives, as options (the defaults are the paper's reading above; see the README's
NoisyDARTS section for what each one measurably does):

* ``sigma: sample`` takes ``std(x)`` per sample instead of over the whole batch tensor.
* ``position: input`` adds the noise to the skip op's *input*, ``o_skip(x + x~)`` literally as
  Eq. 6 writes it; the default ``output`` adds it to ``o_skip(x)``, as the release does. They
  are the same for the identity and differ for the stride-2 skip (a factorized reduce: ReLU,
  two 1x1 convs, BN, which the input noise passes through).
* ``weight_step: false`` keeps the noise out of the weight step (only the architecture step
  sees it); the search loop says which step runs through :meth:`SkipNoise.set_phase`.
* ``skip_drop_path: p`` (:class:`SkipDropPath`): the release's search-time drop-path on the skip
  branch of every edge (``drop_prob = 0.3``, not in the paper), applied after the noise, in
  training *and* eval mode as the release does. It is independent of ``enabled``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .. import config

DISTRIBUTIONS = ("gaussian", "uniform")
MIXTURES = ("additive", "multiplicative")
DECAYS = ("none", "cosine")
SIGMAS = ("batch", "sample")
POSITIONS = ("output", "input")
PHASES = ("arch", "weights")

#: The ``noise`` config section (the defaults are the paper's reading; see the module docstring).
DEFAULTS: dict = {
    "enabled": True,             # NoisyDARTS' noise on the skip connections during the search
    "distribution": "gaussian",  # gaussian | uniform
    "mixture": "additive",       # additive | multiplicative
    "mean": 0.0,                 # mu (0: unbiased)
    "lambda": 0.2,               # sigma = lambda * std(x)
    "decay": "none",             # none | cosine
    "reduction_skips": True,     # noise on stride-2 skips (factorized reduce) too (false: the drop-path stays)
    "sigma": "batch",            # std(x) of the whole batch tensor | per sample
    "position": "output",        # noise on the skip op's output (release) | input (Eq. 6)
    "weight_step": True,         # noise in the weight step too (false: architecture step only)
    "skip_drop_path": 0.0,       # the release's search drop-path on every skip branch (0.3 there)
}


def validate(cfg: dict) -> None:
    noise = cfg["noise"]
    config.check(noise["lambda"] >= 0, f"noise.lambda must be >= 0 (it scales std(x)), got {noise['lambda']}")
    config.check_choice("noise.distribution", noise["distribution"], DISTRIBUTIONS)
    config.check_choice("noise.mixture", noise["mixture"], MIXTURES)
    config.check_choice("noise.decay", noise["decay"], DECAYS)
    config.check_choice("noise.sigma", noise["sigma"], SIGMAS)
    config.check_choice("noise.position", noise["position"], POSITIONS)
    config.check(0.0 <= noise["skip_drop_path"] < 1.0,
                 f"noise.skip_drop_path must be in [0, 1) (the release uses 0.3), got {noise['skip_drop_path']}")


config.SEARCH.register("noise", DEFAULTS, validate=validate, owner=__name__)


class SkipNoise(nn.Module):
    """Noise injected into a skip connection's output (Eq. 6 of NoisyDARTS)."""

    def __init__(self, lam: float = 0.2, mean: float = 0.0, distribution: str = "gaussian",
                 mixture: str = "additive", decay: str = "none", *, sigma: str = "batch",
                 position: str = "output", weight_step: bool = True):
        super().__init__()
        self.lam, self.mean = float(lam), float(mean)
        self.distribution, self.mixture, self.decay = distribution, mixture, decay
        self.sigma, self.position, self.weight_step = sigma, position, bool(weight_step)
        self.scale = 1.0  # decay factor for the current epoch
        # std(x) of the skip output: of this process's batch; a data-parallel run may set
        # noisydarts.runtime.distributed.global_std (distributed.noise_std: global) for the global batch's.
        self.std_fn = torch.Tensor.std
        self.phase = "arch"  # which search step runs; see set_phase

    @classmethod
    def from_config(cls, cfg: dict) -> "SkipNoise | None":
        if not cfg["enabled"]:
            return None
        return cls(cfg["lambda"], cfg["mean"], cfg["distribution"], cfg["mixture"], cfg["decay"],
                   sigma=cfg.get("sigma", "batch"), position=cfg.get("position", "output"),
                   weight_step=cfg.get("weight_step", True))

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.scale = 0.5 * (1 + math.cos(math.pi * epoch / epochs)) if self.decay == "cosine" else 1.0

    def set_phase(self, phase: str) -> None:
        """``arch`` or ``weights``: the search step about to run (``weight_step: false`` turns the
        noise off in the weight step)."""
        self.phase = phase

    def wrap(self, op: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The skip branch with the noise: ``o(x) + x~`` (``position: output``) or
        ``o(x + x~)`` (``input``). :class:`~noisydarts.nn.mixed.MixedEdge` calls this."""
        return op(self(x)) if self.position == "input" else self(op(x))

    def _unit_noise(self, like: torch.Tensor) -> torch.Tensor:
        """Zero-mean, unit-variance noise shaped like ``like``, in its memory layout."""
        shape = like.shape
        # Sampling into a contiguous buffer is ~10x faster on CPU than into a strided
        # (channels_last) one; a channels_last view of an NHWC buffer has the right layout.
        channels_last = like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last)
        if channels_last:
            shape = (shape[0], shape[2], shape[3], shape[1])
        kw = {"dtype": like.dtype, "device": like.device}
        if self.distribution == "gaussian":
            eps = torch.randn(shape, **kw)
        else:  # U(-a, a) has variance a^2 / 3, so a = sqrt(3) gives unit variance.
            eps = torch.rand(shape, **kw).mul_(2.0).sub_(1.0).mul_(math.sqrt(3.0))
        return eps.permute(0, 3, 1, 2) if channels_last else eps

    def _std(self, y: torch.Tensor) -> torch.Tensor:
        """std(x) of Sec. 3.3, detached: of the whole batch tensor, or ``[B, 1, 1, 1]`` per sample."""
        y = y.detach()
        if self.sigma == "sample" and y.dim() > 1:
            return y.flatten(1).std(dim=1).view(-1, *([1] * (y.dim() - 1)))
        return self.std_fn(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training or self.scale == 0.0 or (self.phase == "weights" and not self.weight_step):
            return y
        eps = self._unit_noise(y)
        if self.mixture == "additive":
            sigma = self._std(y) * (self.lam * self.scale)
            return y + (eps.mul_(sigma).add_(self.mean * self.scale))
        factor = eps.mul_(self.lam * self.scale).add_(1.0 + self.mean * self.scale)
        return y * factor

    def extra_repr(self) -> str:
        return (f"lambda={self.lam}, mean={self.mean}, {self.distribution}, {self.mixture}, decay={self.decay}, "
                f"sigma={self.sigma}, position={self.position}, weight_step={self.weight_step}")


class SkipDropPath(nn.Module):
    """The NoisyDARTS release's search-time drop-path on the skip branch (not in the paper).

    Whole samples of the branch are zeroed with probability ``p`` and the rest scaled by
    ``1 / (1 - p)`` (FractalNet drop-path, as DARTS uses in evaluation), so the branch is
    unbiased in expectation: a per-sample multiplicative noise of std ``sqrt(p / (1 - p))``
    (0.65 at the release's p = 0.3, against the additive noise's 0.2). The release applies it in
    every forward of the search network, training and validation alike (its drop_path has no
    training-mode check), so this does too. Unlike the release, the branch output is never
    modified in place: there, for an identity skip in a validation forward, the in-place
    drop-path also rescaled the edge's input tensor seen by the ops after it.
    """

    def __init__(self, p: float = 0.3):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return y
        keep = 1.0 - self.p
        mask = torch.empty((y.shape[0],) + (1,) * (y.dim() - 1), dtype=y.dtype, device=y.device).bernoulli_(keep)
        return y * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SkipTransforms(nn.Module):
    """The noise and the release's drop-path on one skip branch: ``drop_path(noise(o(x)))``,
    the release's order. Forwards the per-epoch and per-step signals to the noise."""

    def __init__(self, noise: SkipNoise | None, drop_path: SkipDropPath | None):
        super().__init__()
        self.noise, self.drop_path = noise, drop_path

    def wrap(self, op: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = self.noise.wrap(op, x) if self.noise is not None else op(x)
        return self.drop_path(y) if self.drop_path is not None else y

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.noise is not None:
            y = self.noise(y)
        return self.drop_path(y) if self.drop_path is not None else y

    def set_epoch(self, epoch: int, epochs: int) -> None:
        if self.noise is not None:
            self.noise.set_epoch(epoch, epochs)

    def set_phase(self, phase: str) -> None:
        if self.noise is not None:
            self.noise.set_phase(phase)


def build_skip_transform(cfg: dict) -> nn.Module | None:
    """What the ``noise`` config section puts on every ``skip_connect`` of the supernet: the
    NoisyDARTS noise (``enabled``), the release's drop-path (``skip_drop_path > 0``), both, or
    nothing (None: plain DARTS, bit for bit)."""
    noise = SkipNoise.from_config(cfg)
    p = cfg.get("skip_drop_path", 0.0)
    if not p:
        return noise
    return SkipTransforms(noise, SkipDropPath(p))

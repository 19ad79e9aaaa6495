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
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

DISTRIBUTIONS = ("gaussian", "uniform")
MIXTURES = ("additive", "multiplicative")
DECAYS = ("none", "cosine")


class SkipNoise(nn.Module):
    """Noise injected into a skip connection's output (Eq. 6 of NoisyDARTS)."""

    def __init__(self, lam: float = 0.2, mean: float = 0.0, distribution: str = "gaussian",
                 mixture: str = "additive", decay: str = "none"):
        super().__init__()
        self.lam, self.mean = float(lam), float(mean)
        self.distribution, self.mixture, self.decay = distribution, mixture, decay
        self.scale = 1.0  # decay factor for the current epoch
        # std(x) of the skip output: of this process's batch; a data-parallel run may set
        # noisydarts.distributed.global_std (distributed.noise_std: global) for the global batch's.
        self.std_fn = torch.Tensor.std

    @classmethod
    def from_config(cls, cfg: dict) -> "SkipNoise | None":
        if not cfg["enabled"]:
            return None
        return cls(cfg["lambda"], cfg["mean"], cfg["distribution"], cfg["mixture"], cfg["decay"])

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.scale = 0.5 * (1 + math.cos(math.pi * epoch / epochs)) if self.decay == "cosine" else 1.0

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

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training or self.scale == 0.0:
            return y
        eps = self._unit_noise(y)
        if self.mixture == "additive":
            sigma = self.std_fn(y.detach()) * (self.lam * self.scale)
            return y + (eps.mul_(sigma).add_(self.mean * self.scale))
        factor = eps.mul_(self.lam * self.scale).add_(1.0 + self.mean * self.scale)
        return y * factor

    def extra_repr(self) -> str:
        return f"lambda={self.lam}, mean={self.mean}, {self.distribution}, {self.mixture}, decay={self.decay}"

"""NoisyDARTS noise: its statistics, where it applies, and that it leaves gradients unbiased."""

import math

import pytest
import torch

from noisydarts.mixed import MixedEdge
from noisydarts.noise import SkipNoise


def _x(scale=3.0):
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 8, 8, 8, generator=g) * scale + 1.5


@pytest.mark.parametrize("distribution", ["gaussian", "uniform"])
def test_additive_noise_has_mean_mu_and_std_lambda_std_x(distribution):
    x = _x()
    lam, mu = 0.2, 0.0
    noise = SkipNoise(lam, mu, distribution).train()
    draws = torch.stack([noise(x) - x for _ in range(20)])
    assert draws.mean().item() == pytest.approx(mu, abs=5e-3)
    assert draws.std().item() == pytest.approx(lam * x.std().item(), rel=0.01)


def test_nonzero_mean_and_uniform_range():
    x = _x()
    noise = SkipNoise(0.1, 0.5, "uniform").train()
    d = noise(x) - x
    assert d.mean().item() == pytest.approx(0.5, abs=5e-3)
    half_width = math.sqrt(3) * 0.1 * x.std().item()
    assert d.min().item() >= 0.5 - half_width - 1e-5 and d.max().item() <= 0.5 + half_width + 1e-5


def test_multiplicative_noise_scales_the_input():
    x = _x()
    noise = SkipNoise(0.2, 0.0, "gaussian", "multiplicative").train()
    ratio = torch.stack([noise(x) / x for _ in range(10)])
    assert ratio.mean().item() == pytest.approx(1.0, abs=5e-3)
    assert ratio.std().item() == pytest.approx(0.2, rel=0.02)


def test_fresh_sample_each_forward_and_identity_in_eval():
    x = _x()
    noise = SkipNoise(0.2).train()
    assert not torch.equal(noise(x), noise(x))
    noise.eval()
    assert noise(x) is x


def test_cosine_decay_schedule():
    noise = SkipNoise(0.2, decay="cosine")
    noise.set_epoch(0, 10)
    assert noise.scale == pytest.approx(1.0)
    noise.set_epoch(5, 10)
    assert noise.scale == pytest.approx(0.5)
    x = _x()
    noise.train()
    noise.set_epoch(5, 10)
    assert (noise(x) - x).std().item() == pytest.approx(0.1 * x.std().item(), rel=0.02)


def test_noise_is_detached_from_the_graph():
    """sigma = lambda * std(x) is a constant to autograd: d(out)/dx is the identity."""
    x = _x().requires_grad_()
    SkipNoise(0.5).train()(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def _edge(noise):
    torch.manual_seed(3)
    return MixedEdge(["skip_connect", "avg_pool_3x3", "sep_conv_3x3"], 8, 1, bn_after_pool=True,
                     op_transforms={"skip_connect": noise} if noise is not None else None)


def test_noise_off_gives_plain_darts_exactly():
    x = _x()
    w = torch.softmax(torch.randn(3), 0)
    plain, noisy = _edge(None).train(), _edge(SkipNoise(0.0))
    noisy.train()
    assert torch.equal(plain(x, w), noisy(x, w))


def test_alpha_gradient_through_noisy_skip_is_unbiased():
    """Eq. 4 of NoisyDARTS: E[grad_alpha] with zero-mean noise equals the noise-free gradient.

    The loss is linear in the edge output, so the expectation is exact and the Monte-Carlo
    mean must converge to the reference; with a biased noise (mu != 0) it must not.
    """
    x = _x(1.0)
    target = torch.randn(64, 8, 8, 8, generator=torch.Generator().manual_seed(2)) + 1.0

    def grad_alpha(noise, draws):
        edge = _edge(noise).eval()  # BN in eval: ops are deterministic, only the noise varies
        if noise is not None:
            noise.train()
        alpha = torch.zeros(3, requires_grad=True)
        grads = []
        for _ in range(draws):
            out = edge(x, torch.softmax(alpha, 0))
            (g,) = torch.autograd.grad((out * target).mean(), alpha)
            grads.append(g)
        return torch.stack(grads)

    reference = grad_alpha(None, 1)[0]
    noisy = grad_alpha(SkipNoise(0.2), 400)
    stderr = noisy.std(0) / math.sqrt(len(noisy))
    assert noisy.std(0).max() > 0  # the noise really perturbs each gradient
    assert torch.all((noisy.mean(0) - reference).abs() < 4 * stderr + 1e-7)
    biased = grad_alpha(SkipNoise(0.2, mean=0.5), 50).mean(0)
    assert (biased - reference).abs().max() > 10 * stderr.max()

"""β-DARTS' Beta-Decay regularization (``noisydarts.methods.betadecay``): the term against a direct
implementation of the release's ``mlc_loss`` at given epochs of its λ schedule, its gradient, its
place in the architecture loss, its composition with other weightings, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.betadecay import BetaDecay, coefficient
from noisydarts.methods.estimators import StepContext, build_estimator
from noisydarts.search import cross_entropy
from noisydarts.spaces import get_space

TINY_DARTS = {"name": "darts", "channels": 4, "layers": 3, "nodes": 2}


def supernet(beta_decay=None, weighting="softmax", space=TINY_DARTS):
    file = {"space": dict(space), "edge": {"weighting": weighting}, "noise": {"enabled": False}, "device": "cpu"}
    if beta_decay is not None:
        file["beta_decay"] = beta_decay
    cfg = noisydarts.resolve_config(config_file=file)
    torch.manual_seed(0)
    model = get_space(cfg).build_supernet(cfg, 10)
    with torch.no_grad():  # α away from its 1e-3 start, so that the softmax is not flat
        for kind in model.kinds:
            model.arch[f"alpha_{kind}"].normal_(0.0, 1.0)
    return model


def release_mlc_loss(alphas) -> torch.Tensor:
    """The release's ``mlc_loss`` on the stacked α, written out: the mean over every edge of every
    cell type of ``log sum_k exp(alpha_k)``."""
    rows = [row for alpha in alphas for row in alpha]
    return sum(torch.log(torch.exp(row).sum()) for row in rows) / len(rows)


def release_lambda(epoch: int) -> float:
    return 0 + 50 * epoch / 100  # optimizers/darts/architect.py, _backward_step


@pytest.mark.parametrize("epoch", [0, 1, 20, 49])
def test_the_term_is_the_release_loss_times_the_release_lambda_of_the_epoch(epoch):
    model = supernet({"weight": 25.0})  # 50 epochs: λ = 25 e / 50 = 50 e / 100
    model.set_epoch(epoch, 50)
    alphas = [model.arch[f"alpha_{kind}"] for kind in model.kinds]
    assert model.regularizers[0].lam == pytest.approx(release_lambda(epoch))
    term = model.arch_regularizer()
    if epoch == 0:
        assert term is None  # λ = 0: nothing added
        return
    expected = release_lambda(epoch) * release_mlc_loss(alphas)
    torch.testing.assert_close(term, expected, rtol=1e-6, atol=1e-6)


def test_the_gradient_is_autograd_of_the_direct_formula_and_lambda_softmax_over_the_edges():
    model = supernet({"weight": 25.0})
    model.set_epoch(10, 50)
    alphas = [model.arch[f"alpha_{kind}"] for kind in model.kinds]
    got = torch.autograd.grad(model.arch_regularizer(), alphas)
    direct = torch.autograd.grad(release_lambda(10) * release_mlc_loss(alphas), alphas)
    rows = sum(a.shape[0] for a in alphas)
    for g, d, a in zip(got, direct, alphas):
        torch.testing.assert_close(g, d, rtol=1e-5, atol=1e-7)
        # ∂/∂α of mean logsumexp: softmax(α) / rows, every α pushed down by its own β
        torch.testing.assert_close(g, release_lambda(10) * torch.softmax(a.detach(), -1) / rows, rtol=1e-5, atol=1e-7)


def test_the_schedule_at_given_epochs():
    assert [coefficient(e, 50, 25.0) for e in (0, 25, 49)] == [0.0, 12.5, 24.5]
    assert [coefficient(e, 100, 50.0) for e in (0, 50, 99)] == [0.0, 25.0, 49.5]  # the release's NB201 default
    assert [coefficient(e, 10, 4.0, start=2.0) for e in (0, 5)] == [2.0, 3.0]
    assert [coefficient(e, 10, 4.0, schedule="constant") for e in (0, 9)] == [4.0, 4.0]
    reg = BetaDecay(4.0, 2.0)
    assert reg.lam == 2.0  # before any set_epoch: epoch 0
    reg.set_epoch(5, 10)
    assert reg.lam == 3.0
    assert reg.state_dict() == {}  # stateless: λ comes from the epoch, resumed runs set it again


def test_off_by_default_and_in_the_architecture_loss_of_the_estimator():
    assert supernet().arch_regularizer() is None and len(supernet().regularizers) == 0
    model = supernet({"weight": 25.0})
    model.set_epoch(30, 50)
    model.train()
    params = model.arch_parameters()
    g = torch.Generator().manual_seed(1)
    val = (torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g))
    ctx = StepContext(cross_entropy, torch.optim.SGD(model.weight_parameters(), 0.05), 0.05)

    def grads():
        for p in params:
            p.grad = None
        build_estimator({"estimator": {"name": "first_order"}}).step(model, val, val, ctx)
        return [p.grad.clone() for p in params]

    with_term = grads()
    term = model.regularizers[0]
    del model.regularizers[0]
    without = grads()
    model.regularizers.append(term)
    own = torch.autograd.grad(term(model), params)
    for a, b, e in zip(with_term, without, own):
        torch.testing.assert_close(a - b, e, rtol=1e-4, atol=1e-6)


def test_with_edge_normalization_only_alpha_is_regularized():
    model = supernet({"weight": 25.0}, weighting="edge_norm")
    model.set_epoch(10, 50)
    alphas = [model.arch[f"alpha_{kind}"] for kind in model.kinds]
    betas = [model.arch[f"beta_{kind}"] for kind in model.kinds]
    grads = torch.autograd.grad(model.arch_regularizer(), alphas + betas, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:2])
    assert grads[2:] == (None, None)  # the edge weights are untouched (the release regularizes α only)
    torch.testing.assert_close(model.arch_regularizer(), 5.0 * release_mlc_loss(alphas))


def test_nb201_one_alpha_and_si_vdnas_alpha_only():
    model = supernet({"weight": 50.0}, space={"name": "nb201", "channels": 4, "cells_per_stage": 1})
    model.set_epoch(99, 100)
    a = model.arch["alpha_cell"]
    expected = 49.5 * torch.logsumexp(a, -1).mean()  # the release's NB201 form: a single [6, 5] α
    torch.testing.assert_close(model.arch_regularizer(), expected)
    model = supernet({"weight": 1.0}, weighting="si_vdnas")
    model.set_search_data(100, 50)
    model.set_epoch(25, 50)
    kl, beta_decay = model.regularizers  # the weighting's KL first, then the keys' terms
    assert isinstance(beta_decay, BetaDecay)
    grads = torch.autograd.grad(beta_decay(model), model.arch_parameters(), allow_unused=True)
    names = [n for n, _ in model.named_parameters() if n.startswith("arch.")]
    touched = {n.split(".")[1] for n, g in zip(names, grads) if g is not None}
    assert touched == {"alpha_normal", "alpha_reduce"}
    torch.testing.assert_close(model.arch_regularizer(), kl(model) + beta_decay(model))


@pytest.mark.parametrize("section, message", [
    ({"weight": -1.0}, "beta_decay.weight must be a number >= 0"),
    ({"start": 1.0}, "beta_decay.start=1.0 is set, but beta_decay.weight is 0 (Beta-Decay off)"),
    ({"weight": 1.0, "schedule": "cosine"}, "beta_decay.schedule must be one of linear, constant"),
    ({"weight": 1.0, "start": 1.0, "schedule": "constant"}, "beta_decay.start=1.0 is set, but beta_decay.schedule is constant"),
])
def test_bad_values_are_refused_in_one_line(section, message):
    with pytest.raises(UserError) as e:
        noisydarts.resolve_config(config_file={"space": dict(TINY_DARTS), "beta_decay": section})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_presets_follow_the_release():
    for preset, ops in (("nb201-beta-darts", 5), ("beta-darts-cifar10", 7)):
        cfg = noisydarts.resolve_config(preset)
        assert cfg["beta_decay"] == {"weight": 25.0, "start": 0.0, "schedule": "linear"} and cfg["epochs"] == 50
        assert [coefficient(e, cfg["epochs"], 25.0) for e in range(50)] == [release_lambda(e) for e in range(50)]
        assert len(cfg["space"]["ops"]) == ops and cfg["arch"]["weight_decay"] == 1e-3
        assert cfg["estimator"]["name"] == "first_order" and math.isclose(cfg["arch"]["lr"], 3e-4)

"""SDARTS (Chen & Hsieh, ICML 2020): random smoothing and adversarial perturbation of the op weights
in the weight step (noisydarts.methods.sdarts), checked against direct implementations of the
release's attacker/perturb.py."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.perturbation import WeightStepPerturbation, build_weight_perturbation
from noisydarts.methods.sdarts import AdversarialPerturbation, RandomSmoothing, epsilon_at, project_rows
from noisydarts.search import Searcher, search
from noisydarts.spaces import get_space

NB201 = {"name": "nb201", "channels": 4, "cells_per_stage": 1}
DARTS = {"name": "darts", "channels": 4, "layers": 3, "nodes": 2}


def config(space=NB201, **overrides):
    return noisydarts.resolve_config(config_file={
        "space": space, "noise": {"enabled": False}, "epochs": 2, "batch_size": 16, "plots": False, "device": "cpu",
        "arch": {"lr": 0.01}, "data": {"name": "cifar10-mini", "limit": 64, "resolution": 16}, **overrides})


def supernet(space=NB201, **overrides):
    cfg = config(space, **overrides)
    return get_space(cfg).build_supernet(cfg, 10)


def release_clip(p: torch.Tensor) -> torch.Tensor:
    """The release's Network.clip, row by row as it is written there."""
    p = p.clone()
    for line in p:
        max_index = line.argmax()
        line.clamp_(0, 1)
        if line.sum() == 0.0:
            line[max_index] = 1.0
        line.div_(line.sum())
    return p


def batch(n=8, size=16):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


# --- the schedule and the projection ---------------------------------------------------------------

def test_epsilon_grows_linearly_as_in_the_release():
    rs = RandomSmoothing(epsilon=0.3, epsilon_min=0.03)
    for epoch, expected in [(0, 0.03), (25, 0.03 + 0.27 * 25 / 50), (49, 0.03 + 0.27 * 49 / 50)]:
        rs.set_epoch(epoch, 50)
        assert rs.epsilon == pytest.approx(expected)
    assert epsilon_at(49, 50, 0.3, 0.03) == pytest.approx(0.2946)


def test_projection_is_the_releases_clip():
    p = torch.tensor([[0.5, -0.2, 0.9], [-0.1, -0.3, -0.05], [0.2, 0.3, 0.5], [1.4, 0.2, -0.6]])
    torch.testing.assert_close(project_rows(p), release_clip(p))
    torch.testing.assert_close(project_rows(p)[1], torch.tensor([0.0, 0.0, 1.0]))  # all <= 0: one-hot at the largest
    torch.testing.assert_close(project_rows(p)[0], torch.tensor([0.5, 0.0, 0.9]) / 1.4)
    # Rows that are not normalized (a sigmoid weighting): clamped to [0, 1] only.
    torch.testing.assert_close(project_rows(p, normalized=False), p.clamp(0, 1))


# --- SDARTS-RS ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", [NB201, DARTS])
def test_random_smoothing_equals_the_release_for_a_given_seed_and_is_cleared_afterwards(space):
    model = supernet(space)
    model.train()
    rs = RandomSmoothing(0.3, 0.03)
    rs.set_epoch(40, 50)
    x, y = batch()
    torch.manual_seed(11)
    with rs.weight_step(model, x, y):
        perturbed = {k: w.detach().clone() for k, (w, _) in model.mixing_weights(len(x)).items()}
    torch.manual_seed(11)  # the release: softmax_arch_parameters, then Random_alpha (uniform_, clip) per kind
    for kind in model.kinds:
        a = torch.softmax(model.arch[f"alpha_{kind}"].detach(), -1)
        expected = release_clip(a + torch.zeros_like(a).uniform_(-rs.epsilon, rs.epsilon))
        torch.testing.assert_close(perturbed[kind], expected, rtol=0, atol=1e-6)
        assert not torch.allclose(perturbed[kind], a, atol=1e-3)
    assert model.mixing_perturbation is None
    for kind, (w, _) in model.mixing_weights(len(x)).items():
        assert torch.equal(w, torch.softmax(model.arch[f"alpha_{kind}"], -1))


def test_cleared_also_when_the_step_fails_and_edge_weights_are_not_perturbed():
    model = supernet(edge={"weighting": "edge_norm"})
    model.train()
    x, y = batch()
    clean = model.mixing_weights(len(x))["cell"]
    rs = RandomSmoothing(0.3, 0.3)
    with pytest.raises(RuntimeError, match="boom"):
        with rs.weight_step(model, x, y):
            w, e = model.mixing_weights(len(x))["cell"]
            assert torch.equal(e, clean[1]) and not torch.equal(w, clean[0])
            raise RuntimeError("boom")
    assert model.mixing_perturbation is None


def test_unnormalized_weights_are_clamped_without_renormalizing():
    model = supernet()
    model.weighting.normalized = False  # what a sigmoid weighting declares
    x, y = batch()
    rs = RandomSmoothing(0.3, 0.3)
    torch.manual_seed(2)
    with rs.weight_step(model, x, y):
        w = model.mixing_weights(len(x))["cell"][0].detach()
    torch.manual_seed(2)
    a = torch.softmax(model.arch["alpha_cell"].detach(), -1)
    torch.testing.assert_close(w, (a + torch.empty_like(a).uniform_(-0.3, 0.3)).clamp(0, 1), rtol=0, atol=1e-6)


def test_a_supernet_with_a_stochastic_weighting_is_refused_at_its_first_weight_step():
    model = supernet()
    model.train()
    x, y = batch()
    model.weighting.stochastic = True  # a supernet built by hand around a sampling weighting
    state = torch.get_rng_state()
    with pytest.raises(UserError, match=r"needs deterministic op weights; SoftmaxWeighting samples its own"):
        with RandomSmoothing().weight_step(model, x, y):
            pass
    assert torch.equal(torch.get_rng_state(), state) and model.mixing_perturbation is None


# --- SDARTS-ADV ---------------------------------------------------------------------------------------

def release_pgd(model, x, y, eps, steps, seed, random_start=True):
    """Linf_PGD_alpha of the release on one model: the op weights replaced by ``p`` (updateType='weight')."""
    kinds, weighting = model.kinds, model.weighting
    saved = {k: torch.softmax(model.arch[f"alpha_{k}"].detach(), -1) for k in kinds}
    current = dict(saved)
    weighting.forward = lambda kind, *rest: current[kind]
    model.eval()
    try:
        with torch.no_grad():
            loss_before = F.cross_entropy(model(x), y)
        torch.manual_seed(seed)
        for k in kinds if random_start else ():
            current[k] = release_clip(saved[k] + torch.zeros_like(saved[k]).uniform_(-eps, eps))
        for _ in range(steps):
            for k in kinds:
                current[k] = current[k].detach().requires_grad_()
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), [current[k] for k in kinds])
            for k, g in zip(kinds, grads):  # Linf_SGD on -loss: p += lr * sign(grad of the loss)
                p = current[k].detach() + 2 * eps / steps * g.sign()
                current[k] = release_clip((p - saved[k]).clamp(-eps, eps) + saved[k])
        with torch.no_grad():
            loss_after = F.cross_entropy(model(x), y)
    finally:
        del weighting.forward
        model.train()
    return (saved if loss_before > loss_after else current), loss_before, loss_after


def test_adversarial_perturbation_is_the_releases_pgd_and_raises_the_loss():
    model = supernet(DARTS)
    model.train()
    x, y = batch()
    adv = AdversarialPerturbation(0.3, 0.03, steps=3)
    adv.set_epoch(49, 50)
    torch.manual_seed(4)
    with adv.weight_step(model, x, y):
        assert model.training  # the weight step itself runs in training mode
        perturbed = {k: w.detach().clone() for k, (w, _) in model.mixing_weights(len(x)).items()}
    assert model.mixing_perturbation is None
    expected, loss_before, loss_after = release_pgd(model, x, y, adv.epsilon, 3, seed=4)
    assert loss_after >= loss_before  # the attack kept: the perturbed training loss is not below the clean one
    for kind in model.kinds:
        torch.testing.assert_close(perturbed[kind], expected[kind], rtol=0, atol=1e-5)
        assert (perturbed[kind] >= 0).all()  # on the simplex (the release's clip)
        torch.testing.assert_close(perturbed[kind].sum(-1), torch.ones(len(perturbed[kind])))
    # Training loss (eval mode, as the attack measures it) at the perturbed weights >= at the clean ones.
    model.eval()
    with torch.no_grad():
        clean_loss = F.cross_entropy(model(x), y)
        model.mixing_perturbation = {k: perturbed[k] - torch.softmax(model.arch[f"alpha_{k}"], -1) for k in model.kinds}
        attacked_loss = F.cross_entropy(model(x), y)
        model.mixing_perturbation = None
    assert attacked_loss >= clean_loss


@pytest.mark.parametrize("eps, kept", [(0.05, True), (0.2, False)])
def test_one_step_without_random_start_and_the_revert_when_the_loss_did_not_rise(eps, kept):
    model = supernet()
    x, y = batch()
    adv = AdversarialPerturbation(eps, eps, steps=1, random_start=False)
    with adv.weight_step(model, x, y):
        w = model.mixing_weights(len(x))["cell"][0].detach()
    expected, loss_before, loss_after = release_pgd(model, x, y, eps, 1, seed=0, random_start=False)
    assert bool(loss_after >= loss_before) == kept  # the two branches of the release's final check
    a = torch.softmax(model.arch["alpha_cell"].detach(), -1)
    torch.testing.assert_close(w, expected["cell"], rtol=0, atol=1e-6)
    assert torch.equal(w, a) != kept  # reverted: the weight step runs at the clean weights


# --- the loop: α's step is unchanged, resume is exact -------------------------------------------------

def test_the_architecture_step_is_the_unperturbed_first_order_step(tmp_path):
    grads, weights = {}, {}
    for kind in ("none", "random", "adversarial"):
        cfg = config(perturb={"kind": kind, "steps": 2} if kind == "adversarial" else {"kind": kind})
        searcher = Searcher(cfg, tmp_path / kind, progress=False)
        model = searcher.model
        searcher.perturbation.set_epoch(1, 2)
        train, val = next(iter(searcher.train_batches.epoch(0))), next(iter(searcher.arch_batches.epoch(0)))
        if kind == "none":  # α's first-order gradient by hand: d L_val / d alpha at the unperturbed weights
            expected = torch.autograd.grad(F.cross_entropy(model(val[0]), val[1]), model.arch["alpha_cell"])[0]
        ctx = searcher.step_context(0.05)
        searcher.search_step(train, val, ctx, model.weight_parameters(), contextlib.nullcontext())
        grads[kind] = model.arch["alpha_cell"].grad.clone()
        weights[kind] = torch.cat([p.detach().flatten() for p in model.weight_parameters()])
        assert model.mixing_perturbation is None
    torch.testing.assert_close(grads["none"], expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(grads["random"], grads["none"]) and torch.equal(grads["adversarial"], grads["none"])
    assert not torch.equal(weights["random"], weights["none"])  # the weight step did see the perturbation
    assert not torch.equal(weights["adversarial"], weights["none"])


def test_resume_is_exact_with_random_smoothing(tmp_path):
    cfg = config(perturb={"kind": "random"})
    full = search(cfg, out=tmp_path / "full", progress=False)
    part = tmp_path / "part"
    search(cfg, out=part, progress=False, stop_after=1)
    resumed = search(resume=part, progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in full.metrics]
    assert resumed.genotype == full.genotype


# --- config -----------------------------------------------------------------------------------------------

def test_the_no_op_is_built_by_default_and_presets_resolve():
    assert type(build_weight_perturbation(config())) is WeightStepPerturbation
    assert isinstance(build_weight_perturbation(config(perturb={"kind": "random"})), RandomSmoothing)
    darts = noisydarts.resolve_config("nb201-darts")
    for name, kind in [("nb201-sdarts-rs", "random"), ("nb201-sdarts-adv", "adversarial"),
                       ("sdarts-rs-cifar10", "random"), ("sdarts-adv-cifar10", "adversarial")]:
        cfg = noisydarts.resolve_config(name)
        assert cfg["perturb"] == {"kind": kind, "epsilon": 0.3, "epsilon_min": 0.03, "steps": 7, "random_start": True}
        assert cfg["estimator"]["name"] == "first_order" and cfg["batch_size"] == 64 and cfg["epochs"] == 50
        if name.startswith("nb201"):  # side by side with nb201-darts in `noisydarts compare`
            assert {k: cfg[k] for k in ("data", "epochs", "batch_size", "train_portion")} == \
                   {k: darts[k] for k in ("data", "epochs", "batch_size", "train_portion")}
        else:
            assert "none" not in cfg["space"]["ops"] and cfg["train"]["drop_path_prob"] == 0.2


@pytest.mark.parametrize("overrides, match", [
    ({"perturb": {"kind": "smooth"}}, r"perturb.kind must be one of .*got 'smooth'"),
    ({"perturb": {"kind": "random", "epsilon": 1.5}}, r"0 <= epsilon_min <= epsilon <= 1"),
    ({"perturb": {"kind": "random", "epsilon": 0.1, "epsilon_min": 0.2}}, r"0 <= epsilon_min <= epsilon <= 1"),
    ({"perturb": {"kind": "adversarial", "steps": 0}}, r"perturb.steps must be >= 1"),
    ({"perturb": {"kind": "random", "steps": 3}}, r"perturb.steps applies to perturb.kind=adversarial only"),
    ({"perturb": {"epsilon": 0.2}}, r"perturb.epsilon applies only with a perturbation"),
    ({"perturb": {"kind": "random"}, "edge": {"weighting": "si_vdnas"}},
     r"perturb.kind=random \(SDARTS\) cannot perturb edge.weighting=si_vdnas: it samples its own op weights"),
    ({"perturb": {"kind": "adversarial"}, "edge": {"weighting": "dirichlet"}},
     r"perturb.kind=adversarial \(SDARTS\) cannot perturb edge.weighting=dirichlet: it samples its own op weights"),
])
def test_refusals_are_one_line(overrides, match):
    with pytest.raises(UserError, match=match) as info:
        config(**overrides)
    assert "\n" not in str(info.value)

"""SI-VDNAS: the closed-form KL, the stochastic weighting, its seams, derivation and the
variable-topology genotype (``noisydarts.sivdnas``, ``VariableGenotype``)."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
import torch.nn as nn

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.estimators import StepContext, build_estimator
from noisydarts.models import create_model, info, resolve_genotype
from noisydarts.search import Searcher, cross_entropy, search
from noisydarts.methods.sivdnas import SIVDNASKL, VariationalDropoutWeighting, gaussian_kl, kl_term, optimal_eta, select_architecture
from noisydarts.spaces import genotype_from_payload, genotype_payload, get_space, parse_genotype
from noisydarts.spaces.darts import VariableGenotype

OPS3 = ["skip_connect", "sep_conv_3x3", "max_pool_3x3"]
TARGETS = [2, 2, 3, 3, 3]  # the 5 edges of a 2-node DARTS cell: (2,0) (2,1) (3,0) (3,1) (3,2)


def config(space=None, **vdnas):
    space = space or {"name": "darts", "channels": 4, "layers": 3, "nodes": 2, "ops": OPS3}
    return noisydarts.resolve_config(config_file={
        "space": space, "edge": {"weighting": "si_vdnas"}, "vdnas": vdnas, "noise": {"enabled": False},
        "epochs": 2, "batch_size": 16, "plots": False, "device": "cpu", "arch": {"lr": 0.01},
        "data": {"name": "cifar10-mini", "limit": 64, "resolution": 16}})


def supernet(space=None, **vdnas):
    cfg = config(space, **vdnas)
    model = get_space(cfg).build_supernet(cfg, 10)
    model.set_search_data(100, 50)
    return model


def weighting_alone(num_ops=3, **options):
    arch = nn.ParameterDict({"alpha_normal": nn.Parameter(torch.randn(len(TARGETS), num_ops))})
    return arch, VariationalDropoutWeighting(arch, ("normal",), TARGETS, seed=3, **options)


def log_var(keep):
    """log delta for a keep probability 1 / (1 + delta)."""
    keep = torch.as_tensor(keep, dtype=torch.float32)
    return torch.log((1 - keep) / keep)


# --- the KL (Eq. 9-11) --------------------------------------------------------------------------

@pytest.mark.parametrize("delta, lam, gamma", [(1 / 9, 0.0, 1.0), (0.5, 0.3, 2.0), (2.0, 0.8, 0.3), (0.05, 0.5, -1.5)])
def test_kl_closed_form_matches_a_monte_carlo_estimate_of_the_gaussian_kl(delta, lam, gamma):
    """KL(N(gamma, gamma^2 delta) || N(lam gamma, 1/eta)) by sampling tau from q, against Eq. 11
    (at eta* of Eq. 10) and the corrected Eq. 9 (at other eta)."""
    g = torch.Generator().manual_seed(0)
    n = 400_000
    tau = gamma + abs(gamma) * math.sqrt(delta) * torch.randn(n, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(gamma, abs(gamma) * math.sqrt(delta))
    eta_star = float(optimal_eta(delta, lam, gamma))
    for eta, closed in [(eta_star, float(kl_term(torch.tensor(math.log(delta), dtype=torch.float64), (1 - lam) ** 2))),
                        (0.3 * eta_star, float(gaussian_kl(delta, lam, 0.3 * eta_star, gamma))),
                        (4.0 * eta_star, float(gaussian_kl(delta, lam, 4.0 * eta_star, gamma)))]:
        p = torch.distributions.Normal(lam * gamma, 1 / math.sqrt(eta))
        diff = q.log_prob(tau) - p.log_prob(tau)
        mc, se = float(diff.mean()), float(diff.std()) / math.sqrt(n)
        assert abs(mc - closed) < 4 * se + 1e-9, (eta, mc, closed, se)


@pytest.mark.parametrize("delta, lam", [(0.11, 0.0), (0.7, 0.4), (3.0, 0.9)])
def test_optimal_eta_minimizes_the_kl_and_the_result_does_not_depend_on_gamma(delta, lam):
    values = []
    for gamma in (0.2, 1.0, 3.0):
        eta = optimal_eta(delta, lam, gamma).double().requires_grad_()
        kl = gaussian_kl(torch.tensor(delta, dtype=torch.float64), lam, eta, gamma)
        (grad,) = torch.autograd.grad(kl, eta)
        assert abs(float(grad) * float(eta.detach())) < 1e-12  # stationary (relative to the scale of eta)
        for f in (0.5, 0.9, 1.1, 2.0):
            assert float(gaussian_kl(delta, lam, f * eta.detach(), gamma)) > float(kl.detach())
        values.append(float(kl.detach()))
    expected = 0.5 * math.log(1 + (1 - lam) ** 2 / delta)  # Eq. 11
    assert values == pytest.approx([expected] * 3, abs=1e-12)  # Proposition 1: no gamma in it
    assert float(kl_term(torch.tensor(math.log(delta)), (1 - lam) ** 2)) == pytest.approx(expected, rel=1e-6)


def test_lambda_zero_gives_the_ard_kl():
    delta = torch.logspace(-3, 3, 25, dtype=torch.float64)
    torch.testing.assert_close(kl_term(delta.log(), 1.0), 0.5 * torch.log1p(1 / delta), rtol=1e-12, atol=1e-14)
    # H-VDNAS (lambda = 0, Phi = 1): the weighting's KL is the ARD KL of every op and edge
    model = supernet(variant="h")
    model.begin_step()
    model.weighting.set_epoch(7, 50)  # no annealing without the semi-implicit prior
    expected = 0.0
    for kind in model.kinds:
        for name in (f"log_delta_{kind}", f"log_sigma_{kind}"):
            d = model.arch[name].detach().double().exp()
            expected += float((0.5 * torch.log1p(1 / d)).sum())
    assert float(model.weighting.kl()) == pytest.approx(expected, rel=1e-6)


def test_kl_is_masked_by_phi_and_annealed_per_epoch_or_per_step():
    arch, w = weighting_alone()
    arch["log_delta_normal"].data = torch.linspace(-2, 1, 15).view(5, 3)
    arch["log_sigma_normal"].data = torch.tensor([-1.0, 0.0, 0.5, -0.3, 2.0])
    w.op_mask_normal.copy_(torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 1, 0]]))
    w.edge_mask_normal.copy_(torch.tensor([1, 0, 1, 1, 0]))

    def by_hand(scale):
        ops = 0.5 * torch.log1p(scale / arch["log_delta_normal"].detach().exp()) * w.op_mask_normal
        edges = 0.5 * torch.log1p(scale / arch["log_sigma_normal"].detach().exp()) * w.edge_mask_normal
        return float(ops.sum() + edges.sum())

    assert float(w.kl()) == pytest.approx(by_hand(1.0), rel=1e-6)  # lambda_0 = 0
    w.set_epoch(3, 50)
    assert w.prior_scale == pytest.approx(0.95 ** 3) and float(w.kl()) == pytest.approx(by_hand(0.95 ** 3), rel=1e-6)
    assert w.metrics()["vdnas_lambda"] == pytest.approx(1 - 0.95 ** 1.5, abs=1e-6)
    _, per_step = weighting_alone(anneal_every="step")
    per_step.set_epoch(9, 50)
    assert per_step.prior_scale == 1.0  # before the first iteration
    for _ in range(4):
        per_step.begin_step()
    assert per_step.prior_scale == pytest.approx(0.95 ** 3)  # the 4th iteration: annealed after 3
    # the regularizer is KL / N_val by default, kl_weight * KL when set
    holder = nn.Module()
    holder.weighting = w
    kl = SIVDNASKL()
    kl.set_search_data(1000, 250)
    assert float(kl(holder)) == pytest.approx(float(w.kl()) / 250, rel=1e-6)
    kl.kl_weight = 2.0
    assert float(kl(holder)) == pytest.approx(2 * float(w.kl()), rel=1e-6)


# --- the stochastic weighting -------------------------------------------------------------------------

def test_sampled_weights_are_unbiased_and_the_masks_have_the_keep_probabilities():
    torch.manual_seed(0)
    arch, w = weighting_alone()
    arch["log_delta_normal"].data = log_var(torch.tensor([[0.9, 0.5, 0.2]] * 5))
    arch["log_sigma_normal"].data = log_var(torch.tensor([0.8, 0.3, 0.6, 0.9, 0.5]))
    w.train()
    T, B = 3000, 32
    means, masks = [], []
    with torch.no_grad():
        for _ in range(T):
            w.begin_step()
            masks.append(w.op_mask_normal.clone())
            means.append(w("normal", B).mean(dim=(2, 3, 4, 5)))  # [edges, ops]: mean over the samples
    means, masks = torch.stack(means), torch.stack(masks)
    w.eval()
    with torch.no_grad():
        expectation = w("normal")
    assert expectation.shape == (5, 3)
    se = means.std(0) / math.sqrt(T)
    assert ((means.mean(0) - expectation).abs() < 4.5 * se + 1e-6).all()
    keep = torch.tensor([[0.9, 0.5, 0.2]] * 5)
    assert ((masks.mean(0) - keep).abs() < 4.5 * torch.sqrt(keep * (1 - keep) / T)).all()
    # eval weights by hand: softmax(alpha) * softmax_node(beta) * keep_op * keep_edge
    phi = torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])  # beta starts at 0: equal edges into a node
    by_hand = torch.softmax(arch["alpha_normal"].detach(), -1) * phi[:, None] * keep * torch.tensor([0.8, 0.3, 0.6, 0.9, 0.5])[:, None]
    torch.testing.assert_close(expectation, by_hand)


def test_per_sample_noise_shapes_and_the_masks_do_not_touch_the_global_generator():
    arch, w = weighting_alone()
    w.train()
    state = torch.get_rng_state()
    w.begin_step()
    assert torch.equal(torch.get_rng_state(), state)  # masks come from the weighting's own generator
    out = w("normal", 8)
    assert out.shape == (5, 3, 8, 1, 1, 1)
    kept = (w.op_mask_normal * w.edge_mask_normal[:, None]).bool()
    assert ((out.flatten(2) != 0).all(-1) == kept).all() and ((out.flatten(2) == 0).all(-1) == ~kept).all()
    row = out.flatten(2)[kept]
    assert (row.std(-1) > 0).all()  # a Gaussian factor per sample
    _, batch = weighting_alone(granularity="batch")
    batch.train()
    assert batch("normal", 8).shape == (5, 3) and not batch.per_sample
    w.eval()
    assert w("normal", 8).shape == (5, 3)


def rows_per_cell(model, x):
    """``{cell name: [the weights row each mixed edge of that cell used]}`` in one training forward."""
    from noisydarts.nn.mixed import MixedEdge

    seen = {}
    edges = [(name, m) for name, m in model.named_modules() if isinstance(m, MixedEdge)]
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, args[1].detach()))
             for name, m in edges]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    cells = {}
    for name, _ in edges:
        cells.setdefault(name.rsplit(".", 1)[0], []).append(seen[name])
    return [torch.stack(rows) for rows in cells.values()]  # per cell: [edges, ops, B, 1, 1, 1]


TINY_SPACES = [({"name": "darts", "channels": 4, "layers": 5, "nodes": 2, "ops": OPS3}, [0, 2, 4]),  # the normal cells
               ({"name": "nb201", "channels": 4, "cells_per_stage": 1}, [0, 1, 2])]


@pytest.mark.parametrize("space, same_kind", TINY_SPACES)
def test_cell_granularity_draws_independent_noise_per_cell_and_per_sample(space, same_kind):
    torch.manual_seed(0)
    model = supernet(space)  # the default granularity: cell
    assert model.weighting.per_cell and model.weighting.per_sample
    model.begin_step()
    cells = [rows_per_cell(model, torch.randn(6, 3, 16, 16))[i] for i in same_kind]
    kept = cells[0].flatten(2).ne(0).all(-1)
    for w in cells:
        assert w.shape == (*kept.shape, 6, 1, 1, 1) and torch.equal(w.flatten(2).ne(0).all(-1), kept)  # same masks
        assert (w.flatten(2)[kept].std(-1) > 0).all()  # a Gaussian factor per sample
    for a, b in zip(cells, cells[1:]):  # independent Gaussian noise in every cell
        assert not torch.isclose(a.flatten(2)[kept], b.flatten(2)[kept]).any()
    # granularity sample: one draw, the same in every cell of a type
    shared = supernet(space, granularity="sample")
    assert not shared.weighting.per_cell
    shared.begin_step()
    rows = rows_per_cell(shared, torch.randn(6, 3, 16, 16))
    assert all(torch.equal(rows[same_kind[0]], rows[i]) for i in same_kind)


def test_cell_noise_has_the_dropout_variance_in_every_cell():
    """Per cell and sample, a kept (edge, op) gets ``(1 + sqrt(delta) eps)(1 + sqrt(sigma) eps')``."""
    torch.manual_seed(1)
    model = supernet(TINY_SPACES[1][0])
    w = model.weighting
    with torch.no_grad():
        model.arch["log_delta_cell"].fill_(math.log(0.25))
        model.arch["log_sigma_cell"].fill_(math.log(0.04))
        w.op_mask_cell.fill_(1.0)
        w.edge_mask_cell.fill_(1.0)
    mean = w.mean_weights("cell").detach()[..., None]
    factors = torch.cat([(rows.flatten(2) / mean) for _ in range(20)
                         for rows in rows_per_cell(model, torch.randn(32, 3, 16, 16))], dim=-1)
    # E = 1 and Var[(1 + a e)(1 + b e')] = (1 + a^2)(1 + b^2) - 1 with a^2 = 0.25, b^2 = 0.04
    assert factors.mean().item() == pytest.approx(1.0, abs=0.01)
    assert factors.var(-1).mean().item() == pytest.approx(1.25 * 1.04 - 1, rel=0.05)


def test_eval_mode_is_deterministic():
    model = supernet()
    model.train()
    model.begin_step()
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        a, b = model(x), model(x)
        model.begin_step()  # new masks change nothing in eval mode
        c = model(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_the_masks_are_the_same_in_the_architecture_and_the_weight_step(tmp_path):
    cfg = config(init_p=0.3)  # masks that differ between iterations
    searcher = Searcher(cfg, tmp_path, progress=False)
    model = searcher.model
    seen = []
    model.weighting.register_forward_hook(lambda m, args, out: seen.append((args[0], out.detach().flatten(2).ne(0).any(-1))))
    ctx = StepContext(cross_entropy, searcher.w_opt, 0.05)
    batches = zip(searcher.train_batches.epoch(0), searcher.arch_batches.epoch(0))
    per_step = []
    for train, val in list(batches)[:2]:
        seen.clear()
        searcher.search_step(train, val, ctx, model.weight_parameters(), contextlib.nullcontext())
        # arch step and weight step: a draw per cell (3 cells: normal, reduce, reduce), of its own type only
        assert [kind for kind, _ in seen] == ["normal", "reduce", "reduce"] * 2
        arch_normal, arch_reduce = seen[0][1], seen[1][1]
        assert all(torch.equal(mask, arch_normal if kind == "normal" else arch_reduce) for kind, mask in seen)
        held = model.weighting.op_mask_normal.bool() & model.weighting.edge_mask_normal.bool()[:, None]
        assert torch.equal(arch_normal, held)
        per_step.append(arch_normal)
    assert not torch.equal(per_step[0], per_step[1])  # resampled every iteration
    assert model.weighting.steps == 2


def test_softmax_keeps_its_contract_unchanged():
    cfg = noisydarts.resolve_config(config_file={"space": {"name": "darts", "channels": 4, "layers": 3, "nodes": 2}})
    model = get_space(cfg).build_supernet(cfg, 10)
    model.begin_step()
    op_weights, edge_weights = model.mixing_weights(8)["normal"]
    assert torch.equal(op_weights, torch.softmax(model.arch["alpha_normal"], -1)) and edge_weights is None
    assert model.arch_regularizer() is None and model.keep_masks() is None and model.epoch_metrics() == {}
    assert len(model.arch_param_groups()) == 1


# --- the seams: KL in the architecture loss, optimizer groups ------------------------------------------

@pytest.mark.parametrize("name, options", [("first_order", {}), ("second_order", {}), ("second_order", {"exact": True}),
                                           ("amended", {"eta": 0.1})])
def test_every_estimator_adds_the_kl_gradient_and_only_to_the_architecture(name, options):
    model = supernet(kl_weight=0.3)
    model.train()
    model.begin_step()
    estimator = build_estimator({"estimator": {"name": name, **build_defaults(name), **options}})
    g = torch.Generator().manual_seed(1)
    batch = lambda: (torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g))
    train, val = batch(), batch()
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9)
    params = model.arch_parameters()

    def grads(kl_weight):
        model.regularizers[0].kl_weight = kl_weight
        for p in params:
            p.grad = None
        torch.manual_seed(5)  # the same Gaussian noise in both runs
        estimator.step(model, train, val, StepContext(cross_entropy, w_opt, 0.05))
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]

    with_kl, without = grads(0.3), grads(0.0)
    model.regularizers[0].kl_weight = 0.3
    expected = torch.autograd.grad(model.arch_regularizer(), params, allow_unused=True)
    for a, b, e, p in zip(with_kl, without, expected, params):
        torch.testing.assert_close(a - b, torch.zeros_like(p) if e is None else e, atol=2e-5, rtol=1e-4)
    assert any(e is not None and e.abs().sum() > 0 for e in expected)
    # the weight step's loss is the plain search loss
    loss, logits = model.training_loss(*train)
    assert torch.allclose(loss, nn.functional.cross_entropy(logits, train[1]))


def build_defaults(name):
    from noisydarts.methods.estimators import ESTIMATORS

    return dict(ESTIMATORS[name].DEFAULTS)


def test_no_weight_decay_on_the_log_variances(tmp_path):
    searcher = Searcher(config(), tmp_path, progress=False)
    groups = searcher.a_opt.param_groups
    names = {id(p): n for n, p in searcher.model.named_parameters()}
    assert groups[0]["weight_decay"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    assert {names[id(p)].split(".")[1].rsplit("_", 1)[0] for p in groups[0]["params"]} == {"alpha", "beta"}
    assert {names[id(p)].split(".")[1].rsplit("_", 1)[0] for p in groups[1]["params"]} == {"log_delta", "log_sigma"}
    assert searcher.model.regularizers[0].num_val == 32  # half of the 64 images: the KL's N


# --- variants ---------------------------------------------------------------------------------------

def test_h_and_v_variants():
    h = supernet(variant="h")
    h.train()
    h.begin_step()
    assert h.weighting.op_mask_normal.all() and h.weighting.edge_mask_normal.all()  # Phi = 1
    assert (h.weighting("normal", 4).flatten(2) != 0).all()
    h.eval()
    torch.testing.assert_close(h.weighting("normal"), h.weighting.mean_weights("normal"))  # E[xi] = 1
    assert h.weighting.derivations == ("deterministic",)

    v = supernet(variant="v")
    assert not any(k.startswith(("beta", "log_sigma")) for k in v.arch)  # no edge terms at all
    v.eval()
    torch.testing.assert_close(v.weighting("normal"), torch.softmax(v.arch["alpha_normal"], -1))
    d = v.arch["log_delta_normal"].detach().exp()
    assert float(v.weighting.kl()) == pytest.approx(float((0.5 * torch.log1p(1 / d)).sum() * 2), rel=1e-6)
    with pytest.raises(UserError, match="needs the Bernoulli masks of variant si"):
        config(variant="v", derivation="sample")


@pytest.mark.parametrize("key, value, match", [("variant", "x", "vdnas.variant"), ("kl_weight", -1, "vdnas.kl_weight"),
                                               ("anneal", 0.0, "vdnas.anneal"), ("init_p", 1.0, "vdnas.init_p"),
                                               ("granularity", "element", "vdnas.granularity")])
def test_bad_options_are_one_line_errors(key, value, match):
    with pytest.raises(UserError, match=match):
        config(**{key: value})


def test_raw_parametrization_starts_at_the_softmax_weights():
    soft, raw = supernet(), supernet(parametrization="raw")
    soft.eval(), raw.eval()
    torch.testing.assert_close(raw.weighting.mean_weights("normal"), soft.weighting.mean_weights("normal"),
                               atol=5e-3, rtol=0)
    assert torch.equal(raw.arch["beta_normal"].detach(), torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3]))


# --- derivation ---------------------------------------------------------------------------------------

def test_derivation_on_hand_made_parameters():
    model = supernet()
    w = model.weighting
    op_keep = torch.tensor([[0.9, 0.4, 0.6], [0.3, 0.8, 0.4], [0.2, 0.45, 0.1], [0.7, 0.1, 0.2], [0.55, 0.6, 0.51]])
    edge_keep = torch.tensor([0.9, 0.9, 0.6, 0.7, 0.4])
    with torch.no_grad():
        model.arch["log_delta_normal"].copy_(log_var(op_keep))
        model.arch["log_sigma_normal"].copy_(log_var(edge_keep))
        w.op_mask_normal.copy_(torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]]))
        w.edge_mask_normal.copy_(torch.tensor([1, 1, 0, 0, 0]))
    # reduce: everything sampled and probable, so everything is kept
    sampled = model.genotype()
    assert isinstance(sampled, VariableGenotype)
    # node 2: edge 2<-0 keeps its sampled skip and max pool; edge 2<-1 sampled no op: its most probable (sep_conv)
    # node 3: no edge sampled: its most probable edge (3<-1, 0.7) with its sampled ops (all three)
    assert sampled.normal == ((("skip_connect", 0), ("max_pool_3x3", 0), ("sep_conv_3x3", 1)),
                              (("skip_connect", 1), ("sep_conv_3x3", 1), ("max_pool_3x3", 1)))
    assert sampled.reduce == tuple(tuple((op, j) for j in range(n + 2) for op in OPS3) for n in range(2))
    # deterministic: keep probability > 1/2; edge 3<-0 keeps no op: its most probable one (sep_conv 0.45)
    det = model.genotype("deterministic")
    assert det.normal == ((("skip_connect", 0), ("max_pool_3x3", 0), ("sep_conv_3x3", 1)),
                          (("sep_conv_3x3", 0), ("skip_connect", 1)))
    assert model.epoch_metrics()["genotype_deterministic"] == str(det)


def test_none_is_never_kept_and_v_vdnas_keeps_the_edges_with_ops():
    model = supernet({"name": "darts", "channels": 4, "layers": 3, "nodes": 2, "ops": ["none", *OPS3]})
    with torch.no_grad():
        model.arch["log_delta_normal"].copy_(log_var(torch.tensor([[0.99, 0.6, 0.7, 0.5]] * 5)))
        model.weighting.op_mask_normal.copy_(torch.tensor([[1, 0, 0, 0]] * 5))
    g = model.genotype()
    # only none was sampled: every edge keeps its most probable op that is not none
    assert g.normal == ((("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
                        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)))
    assert g.count("none", "reduce") == 0 and len(g.cell("reduce")) == 5 * 3  # all but none

    prob = torch.tensor([[0.9, 0.2], [0.3, 0.4], [0.2, 0.1], [0.35, 0.3], [0.3, 0.2]])
    mask = select_architecture(prob > 0.5, None, prob, None, TARGETS)
    # node 2 keeps the edge with a kept op; node 3 keeps none: the edge whose best op is most probable (3<-1)
    assert mask.tolist() == [[True, False], [False, False], [False, False], [True, False], [False, False]]


def test_nb201_lookup_cell_takes_the_op_with_the_largest_keep_probability(tmp_path):
    model = supernet({"name": "nb201", "channels": 4, "cells_per_stage": 1})
    ops = model.op_names
    keep = torch.full((6, len(ops)), 0.3)
    choice = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "nor_conv_3x3"]
    for e, op in enumerate(choice):
        keep[e, ops.index(op)] = 0.8
    with torch.no_grad():
        model.arch["log_delta_cell"].copy_(log_var(keep))
        model.arch["alpha_cell"].copy_(-5 * log_var(keep))  # the weights prefer the other ops
    assert model.genotype().ops == tuple(choice)
    # and a search runs there, its cell one of the benchmark's
    run = search(config({"name": "nb201", "channels": 4, "cells_per_stage": 1}) | {"epochs": 1}, out=tmp_path / "nb",
                 progress=False)
    assert "cifar10_test" in run.metrics[-1] and "genotype_deterministic" not in run.metrics[-1]


# --- the variable-topology genotype ------------------------------------------------------------------------

SMALL = VariableGenotype(
    normal=[[("sep_conv_3x3", 0), ("skip_connect", 0), ("max_pool_3x3", 1)], [("dil_conv_3x3", 2), ("sep_conv_3x3", 2)]],
    normal_concat=[2, 3], reduce=[[("skip_connect", 0), ("avg_pool_3x3", 1)], [("skip_connect", 2)]], reduce_concat=[2, 3])


def test_variable_genotype_round_trips_through_text_and_json(tmp_path):
    assert VariableGenotype.parse(str(SMALL)) == SMALL == parse_genotype(str(SMALL))
    assert parse_genotype("genotypes." + str(SMALL)) == SMALL
    payload = json.loads(json.dumps(genotype_payload(SMALL)))
    assert payload["space"] == "darts" and payload["type"] == "VariableGenotype"
    assert genotype_from_payload(payload) == SMALL
    assert get_space("darts").from_json(payload["genotype"]) == SMALL  # recognized without the type name
    (tmp_path / "genotype.json").write_text(json.dumps(payload))
    assert resolve_genotype(tmp_path) == SMALL
    assert SMALL.count("skip_connect", "normal") == 1 and SMALL.count("skip_connect", "reduce") == 2
    graphs = get_space("darts").cell_graphs(SMALL)
    assert [e for e in graphs[0].edges if e[2]][:2] == [("c\u2096\u208b\u2082", "0", "sep_conv_3x3"),
                                                       ("c\u2096\u208b\u2082", "0", "skip_connect")]  # two ops, one edge
    for bad, match in [("normal=[[]]", "no \\(op, input\\) pair"), ("normal=[[('skip_connect', 2)]]", "takes input 2"),
                       ("normal=[[('skip_connect', 0), ('skip_connect', 0)]]", "twice"),
                       ("normal=[[('none', 0)]]", "unknown operation")]:
        with pytest.raises(UserError, match=match):
            parse_genotype(f"VariableGenotype({bad}, normal_concat=[2], reduce=[[('skip_connect', 0)]], reduce_concat=[2])")


def test_variable_network_parameters_counted_by_hand():
    net = create_model(SMALL, "cifar10", channels=4, layers=3, auxiliary=False)
    stem = 3 * 12 * 9 + 24  # 3x3 conv 3->12 + BN
    # cell 0 (normal, C=4): two ReLU-conv1x1-BN preprocessors 12->4 (48 + 8 each); node 2: sep_conv_3x3
    # (2 x (dw 36 + pw 16 + BN 8)), identity, max pool; node 3: dil_conv_3x3 (36 + 16 + 8), sep_conv_3x3
    cell0 = 2 * (48 + 8) + 2 * (36 + 16 + 8) + (36 + 16 + 8) + 2 * (36 + 16 + 8)
    # cell 1 (reduce, C=8): preprocess 12->8 (96 + 16), 8->8 (64 + 16); skip from an input at stride 2 is a
    # factorized reduce 8->8 (2 x 8x4 + BN 16); avg pool: 0; node 3's skip from node 2: identity
    cell1 = (96 + 16) + (64 + 16) + (2 * 32 + 16)
    # cell 2 (reduce after a reduction, C=16): factorized reduce 8->16 (2 x 8x8 + BN 32), preprocess 16->16
    # (256 + 32); factorized reduce 16->16 (2 x 16x8 + BN 32)
    cell2 = (2 * 64 + 32) + (256 + 32) + (2 * 128 + 32)
    classifier = 2 * 16 * 10 + 10  # concat of 2 nodes at C=16
    assert [sum(p.numel() for p in c.parameters()) for c in net.cells] == [cell0, cell1, cell2] == [412, 272, 736]
    assert sum(p.numel() for p in net.parameters()) == stem + cell0 + cell1 + cell2 + classifier == 2098
    assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_derived_size_from_a_hand_made_keep_mask_is_the_genotypes():
    """A keep mask holding exactly DARTS-V2's pairs derives a 3.35 M-parameter network at C=36, 20 cells
    (the DARTS paper's 3.3 M): the size the calibration of ``kl_weight`` aims at is counted right."""
    from noisydarts.spaces.base import count_params
    from noisydarts.spaces.darts.supernet import dense_edges, derive_variable

    ops = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
    edges = dense_edges(4)
    v2 = resolve_genotype("darts_v2")
    masks = []
    for pairs in (v2.normal, v2.reduce):
        mask = torch.zeros(len(edges), len(ops), dtype=torch.bool)
        for n, (op, source) in enumerate(pairs):
            mask[edges.index((2 + n // 2, source)), ops.index(op)] = True
        masks.append(select_architecture(mask, mask.any(1), mask.float(), mask.any(1).float(), [t for t, _ in edges]))
    assert int(masks[0].sum()) == int(masks[1].sum()) == 8  # nothing added by the fallbacks
    derived = derive_variable(masks[0], masks[1], ops, edges)
    params = count_params(create_model(derived, "cifar10", channels=36, layers=20))
    assert params == pytest.approx(count_params(create_model(v2, "cifar10", channels=36, layers=20)), abs=1e-9)
    assert params == pytest.approx(3.349342, abs=1e-6)


def test_the_kl_weight_default_is_one_and_null_divides_by_the_search_val_examples():
    cfg = noisydarts.resolve_config("si-vdnas-cifar10")
    assert cfg["vdnas"]["kl_weight"] == 1.0 and cfg["vdnas"]["granularity"] == "cell"
    [reg] = VariationalDropoutWeighting.regularizers_from_config(cfg)
    model = supernet()
    model.train()
    model.begin_step()
    reg.set_search_data(100, 50)
    assert float(reg(model)) == pytest.approx(float(model.weighting.kl()), rel=1e-6)  # 1.0 * KL
    [per_example] = VariationalDropoutWeighting.regularizers_from_config(config(kl_weight=None))
    per_example.set_search_data(100, 50)
    assert float(per_example(model)) == pytest.approx(float(model.weighting.kl()) / 50, rel=1e-6)


# --- end to end ------------------------------------------------------------------------------------------

def test_si_vdnas_search_in_the_darts_space_through_train_info_evaluate_export(tmp_path):
    from noisydarts.viz.run import plot_run
    from noisydarts.train import evaluate, export, load_trained, train

    run = search(config() | {"epochs": 1}, out=tmp_path / "search", progress=False)
    genotype = run.genotype
    assert isinstance(genotype, VariableGenotype)
    record = run.metrics[-1]
    assert record["genotype"] == str(genotype) and "genotype_deterministic" in record
    assert {"vdnas_lambda", "vdnas_kl", "keep_ops", "keep_edges", "ops_normal", "ops_reduce"} <= set(record)
    assert json.loads((tmp_path / "search" / "genotype.json").read_text())["type"] == "VariableGenotype"
    assert resolve_genotype(tmp_path / "search") == genotype
    assert "cells.png" in {p.name for p in plot_run(tmp_path / "search")}
    assert info(tmp_path / "search")["params_m"] > 0
    trained = train(tmp_path / "search", {"epochs": 1, "batch_size": 16, "drop_path_prob": 0.3, "device": "cpu", "plots": False,
                                          "network": {"channels": 4, "layers": 3},
                                          "data": {"name": "cifar10-mini", "limit": 32, "cutout": 0}},
                    out=tmp_path / "train", progress=False)
    assert resolve_genotype(trained.run_dir) == genotype and trained.metrics[0]["train_loss"] > 0
    result = evaluate(trained.run_dir)
    assert result["images"] > 0
    path = export(trained.run_dir, "torchscript", tmp_path / "net.ts")
    model, _ = load_trained(trained.run_dir)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("anneal_every", ["epoch", "step"])
def test_resume_is_exact(tmp_path, anneal_every):
    cfg = config(anneal_every=anneal_every) | {"warmup_epochs": 0}
    full = search(cfg, out=tmp_path / "full", progress=False)
    part = tmp_path / "part"
    search(cfg, out=part, progress=False, stop_after=1)
    resumed = search(resume=part, progress=False)
    assert resumed.genotype == full.genotype
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and "weighting._extra_state" in a
    for key in a:
        if key.endswith("_extra_state"):
            assert torch.equal(a[key]["generator"], b[key]["generator"]) and a[key]["steps"] == b[key]["steps"]
        else:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)
    assert [m["vdnas_kl"] for m in resumed.metrics] == pytest.approx([m["vdnas_kl"] for m in full.metrics])
    assert [m["train_loss"] for m in resumed.metrics] == pytest.approx([m["train_loss"] for m in full.metrics])


def test_presets_resolve_with_the_papers_schedule():
    for name, epochs, data in [("si-vdnas-cifar10", 50, "cifar10"), ("si-vdnas-convergence-cifar10", 150, "cifar10"),
                               ("si-vdnas-cifar100", 50, "cifar100"), ("si-vdnas-convergence-cifar100", 150, "cifar100")]:
        cfg = noisydarts.resolve_config(name)
        assert (cfg["epochs"], cfg["data"]["name"], cfg["batch_size"], cfg["warmup_epochs"], cfg["train_portion"]) == \
            (epochs, data, 64, 15, 0.5)
        assert cfg["edge"]["weighting"] == "si_vdnas" and "none" not in cfg["space"]["ops"] and len(cfg["space"]["ops"]) == 7
        assert (cfg["space"]["channels"], cfg["space"]["layers"], cfg["noise"]["enabled"]) == (16, 8, False)
        assert cfg["vdnas"]["anneal"] == 0.95 and cfg["vdnas"]["init_p"] == 0.01
        assert (cfg["vdnas"]["granularity"], cfg["vdnas"]["kl_weight"], cfg["train"]["drop_path_prob"]) == ("cell", 1.0, 0.3)

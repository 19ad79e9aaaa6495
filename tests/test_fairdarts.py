"""FairDARTS (``noisydarts.methods.fairdarts``): the sigmoid weighting, the zero-one loss in the
architecture loss, the threshold derivations, the NAS-Bench-201 lookup cell, refusals, presets and
a tiny search."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import noisydarts
from noisydarts.benchmark.nb201 import NB201Arch
from noisydarts.errors import UserError
from noisydarts.methods.estimators import StepContext, build_estimator
from noisydarts.methods.fairdarts import SigmoidWeighting, threshold_masks
from noisydarts.methods.zero_one import ZeroOneLoss, zero_one_loss
from noisydarts.methods.weightings import WEIGHTINGS
from noisydarts.search import cross_entropy, search
from noisydarts.spaces import get_space
from noisydarts.spaces.darts import Genotype, VariableGenotype

OPS3 = ["skip_connect", "sep_conv_3x3", "max_pool_3x3"]
DARTS_TINY = {"name": "darts", "channels": 4, "layers": 3, "nodes": 2, "ops": OPS3}
TARGETS = [2, 2, 3, 3, 3]  # the 5 edges of a 2-node DARTS cell: (2,0) (2,1) (3,0) (3,1) (3,2)


def config(space=None, **sections):
    return noisydarts.resolve_config(config_file={
        "space": space or DARTS_TINY, "edge": {"weighting": "sigmoid"}, "noise": {"enabled": False},
        "epochs": 1, "batch_size": 16, "plots": False, "device": "cpu",
        "data": {"name": "cifar10-mini", "limit": 64, "resolution": 16}, **sections})


def supernet(space=None, seed=0, **sections):
    cfg = config(space, **sections)
    torch.manual_seed(seed)
    return get_space(cfg).build_supernet(cfg, 10)


def logit(p):
    """alpha with sigma(alpha) = p."""
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p)).float()


def direct_zero_one(alphas, weight):
    """The paper's w_{0-1} * L_{0-1} = -w/N sum_i (sigma(alpha_i) - 0.5)^2 over every alpha together."""
    s = torch.cat([torch.sigmoid(a).reshape(-1) for a in alphas])
    return -weight * ((s - 0.5) ** 2).sum() / s.numel()


# --- the weighting -----------------------------------------------------------------------------------

def test_sigmoid_weights_are_sigmoid_of_alpha_with_no_row_total():
    model = supernet()
    with torch.no_grad():
        model.arch["alpha_normal"].copy_(torch.randn(5, 3))
    for kind in model.kinds:
        op_weights, edge_weights = model.mixing_weights(4)[kind]
        assert torch.equal(op_weights, torch.sigmoid(model.arch[f"alpha_{kind}"])) and edge_weights is None
    assert not torch.allclose(model.mixing_weights(4)["normal"][0].sum(-1), torch.ones(5))
    assert SigmoidWeighting.normalized is False
    torch.testing.assert_close(model.arch_weights()["normal"], torch.sigmoid(model.arch["alpha_normal"]).detach())


def test_sigmoid_in_the_mbv2_space_only_zeroes_the_choices_a_layer_lacks():
    space = {"name": "mbv2", **get_space("mbv2").TINY["space"]}
    model = supernet(space)
    alpha = model.arch["alpha_layer"]
    expected = torch.sigmoid(alpha) * model.allowed  # no rescaling: a sigmoid row has no total to keep
    torch.testing.assert_close(model.layer_weights(), expected)


# --- the zero-one loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["l2", "l1"])
def test_zero_one_loss_and_its_gradient_match_the_direct_formula(form):
    model = supernet(zero_one={"weight": 10.0, "form": form})
    with torch.no_grad():
        for kind in model.kinds:
            model.arch[f"alpha_{kind}"].copy_(2 * torch.randn(5, 3))
    alphas = [model.arch[f"alpha_{kind}"] for kind in model.kinds]
    (regularizer,) = model.regularizers
    assert isinstance(regularizer, ZeroOneLoss)
    s = torch.cat([torch.sigmoid(a).reshape(-1) for a in alphas])
    direct = direct_zero_one(alphas, 10.0) if form == "l2" else -10.0 * (s - 0.5).abs().sum() / s.numel()
    value = model.arch_regularizer()
    torch.testing.assert_close(value, direct)
    got = torch.autograd.grad(value, alphas)
    want = torch.autograd.grad(direct, alphas)
    for g, w, a in zip(got, want, alphas):
        torch.testing.assert_close(g, w)
        if form == "l2":  # by hand: d/da -w/N (s - 1/2)^2 = -2w/N (s - 1/2) s (1 - s)
            sig = torch.sigmoid(a)
            torch.testing.assert_close(g, -2 * 10.0 / 30 * (sig - 0.5) * sig * (1 - sig))
    assert float(zero_one_loss(torch.tensor([0.0, 1.0, 0.5]))) == pytest.approx(-(0.25 + 0.25 + 0) / 3)


def test_zero_one_loss_leaves_out_none():
    space = {**DARTS_TINY, "ops": ["none", *OPS3]}
    model = supernet(space, zero_one={"weight": 10.0})
    alphas = [model.arch[f"alpha_{kind}"] for kind in model.kinds]
    with torch.no_grad():
        for a in alphas:
            a.copy_(torch.randn(5, 4))
    expected = direct_zero_one([a[:, 1:] for a in alphas], 10.0)
    torch.testing.assert_close(model.arch_regularizer(), expected)
    grads = torch.autograd.grad(model.arch_regularizer(), alphas)
    assert all(float(g[:, 0].abs().max()) == 0.0 and float(g[:, 1:].abs().max()) > 0 for g in grads)


def test_zero_one_is_in_the_architecture_loss_and_not_in_the_weight_step():
    model = supernet(zero_one={"weight": 10.0})
    model.train()
    with torch.no_grad():
        for kind in model.kinds:
            model.arch[f"alpha_{kind}"].copy_(torch.randn(5, 3))
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 10, (2,), generator=g))
    val = (torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 10, (2,), generator=g))
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.05)
    ctx = StepContext(cross_entropy, w_opt, 0.05)
    params = model.arch_parameters()
    alphas = [model.arch[f"alpha_{kind}"] for kind in model.kinds]

    torch.testing.assert_close(ctx.arch_loss(model, *val) - cross_entropy(model, *val), direct_zero_one(alphas, 10.0))
    loss, logits = model.training_loss(*train)  # what the weight step minimizes: the plain cross entropy
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, train[1]))

    estimator = build_estimator({"estimator": {"name": "first_order"}})

    def arch_grads(weight):
        model.regularizers[0].weight = weight
        for p in params:
            p.grad = None
        estimator.step(model, train, val, ctx)
        return [p.grad.clone() for p in params]

    with_loss, without = arch_grads(10.0), arch_grads(0.0)
    expected = torch.autograd.grad(direct_zero_one(alphas, 10.0), params)
    for a, b, e in zip(with_loss, without, expected):
        torch.testing.assert_close(a - b, e, atol=1e-6, rtol=1e-4)


def test_zero_one_acts_on_the_softmax_op_weights_of_other_weightings():
    cfg = config(edge={"weighting": "edge_norm"}, zero_one={"weight": 2.0})
    model = get_space(cfg).build_supernet(cfg, 10)
    w = torch.cat([torch.softmax(model.arch[f"alpha_{k}"], -1).reshape(-1) for k in model.kinds])
    torch.testing.assert_close(model.arch_regularizer(), -2.0 * ((w - 0.5) ** 2).mean())


# --- derivation ------------------------------------------------------------------------------------------

def hand_made(model):
    """normal: node 2 keeps sep on (2,0) (0.9 >= 0.85; skip 0.88 also reaches it), not (2,1) (best 0.8);
    node 3 keeps its two best edges (3,2) skip 0.97 and (3,1) sep 0.95, not (3,0) max_pool 0.9.
    reduce: nothing reaches 0.85, so each node keeps its best op on its best edge."""
    normal = [[0.88, 0.90, 0.10], [0.80, 0.20, 0.30], [0.10, 0.20, 0.90], [0.30, 0.95, 0.20], [0.97, 0.10, 0.10]]
    reduce = [[0.50, 0.60, 0.10], [0.40, 0.20, 0.70], [0.10, 0.80, 0.20], [0.30, 0.20, 0.50], [0.10, 0.10, 0.40]]
    with torch.no_grad():
        model.arch["alpha_normal"].copy_(logit(normal))
        model.arch["alpha_reduce"].copy_(logit(reduce))


def test_threshold_derivation_on_hand_made_alpha():
    model = supernet()
    hand_made(model)
    assert model.genotype() == VariableGenotype(
        normal=[[("sep_conv_3x3", 0)], [("sep_conv_3x3", 1), ("skip_connect", 2)]], normal_concat=[2, 3],
        reduce=[[("max_pool_3x3", 1)], [("sep_conv_3x3", 0)]], reduce_concat=[2, 3])
    # threshold_edge: every edge, its two best ops that reach the threshold
    assert model.genotype("threshold_edge") == VariableGenotype(
        normal=[[("skip_connect", 0), ("sep_conv_3x3", 0)], [("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 2)]],
        normal_concat=[2, 3], reduce=[[("max_pool_3x3", 1)], [("sep_conv_3x3", 0)]], reduce_concat=[2, 3])
    # darts: the space's top-2 derivation on sigma(alpha)
    assert model.genotype("darts") == Genotype(
        normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("skip_connect", 2), ("sep_conv_3x3", 1)], normal_concat=[2, 3],
        reduce=[("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("max_pool_3x3", 1)], reduce_concat=[2, 3])
    metrics = model.epoch_metrics()
    assert metrics["sigmoid_above_threshold"] == {"normal": 5, "reduce": 0}
    assert metrics["genotype_darts"] == str(model.genotype("darts"))


def test_threshold_masks_never_keep_none_and_take_the_threshold_as_given():
    w = torch.tensor([[0.99, 0.70, 0.20], [0.99, 0.40, 0.86], [0.99, 0.10, 0.10]])
    keep = threshold_masks(w, [2, 2, 2], 0.85, never=[0])
    assert keep.tolist() == [[False, False, False], [False, False, True], [False, False, False]]
    keep = threshold_masks(w, [2, 2, 2], 0.9, never=[0])  # nothing reaches 0.9: the best op on the best edge
    assert keep.tolist() == [[False, False, False], [False, False, True], [False, False, False]]
    keep = threshold_masks(w, [2, 2, 3], 0.85, never=[0])  # node 3 (one edge, best 0.1) falls back to it
    assert keep.tolist() == [[False, False, False], [False, False, True], [False, True, False]]


def test_derivation_and_threshold_keys_are_honoured():
    model = supernet(fairdarts={"derivation": "darts", "threshold": 0.75})
    hand_made(model)
    assert isinstance(model.genotype(), Genotype) and model.weighting.derivations == ("darts", "threshold", "threshold_edge")
    low = model.genotype("threshold")  # at 0.75, (2,1) skip 0.80 is kept too
    assert low.normal[0] == (("sep_conv_3x3", 0), ("skip_connect", 1))


def test_nb201_cell_is_the_per_edge_argmax_of_sigmoid_alpha():
    space = {"name": "nb201", "channels": 4, "cells_per_stage": 1}
    model = supernet(space, zero_one={"weight": 10.0})
    ops = model.op_names
    chosen = [1, 3, 0, 2, 4, 3]  # none wins edge 2: every real op's weight fell below sigma(alpha_none)
    sig = torch.full((6, 5), 0.2)
    for edge, op in enumerate(chosen):
        sig[edge, op] = 0.9 - 0.05 * edge
    with torch.no_grad():
        model.arch["alpha_cell"].copy_(logit(sig))
    assert model.genotype() == NB201Arch(tuple(ops[k] for k in chosen))


# --- refusals and presets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sections, message", [
    ({"edge": {"weighting": "softmax"}, "fairdarts": {"threshold": 0.9}},
     "fairdarts.threshold=0.9 is set, but edge.weighting is softmax and the fairdarts keys configure the sigmoid weighting only"),
    ({"edge": {"weighting": "si_vdnas"}, "zero_one": {"weight": 10}},
     "zero_one.weight=10.0 cannot be used with edge.weighting=si_vdnas (the loss pushes deterministic op weights to 0 or 1)"),
    *([({"edge": {"weighting": "dirichlet"}, "zero_one": {"weight": 1}},  # DrNAS, where registered
        "zero_one.weight=1.0 cannot be used with edge.weighting=dirichlet (the loss pushes deterministic op weights")]
      if "dirichlet" in WEIGHTINGS else []),
    ({"zero_one": {"form": "l1"}}, "zero_one.form=l1 is set, but zero_one.weight is 0 (the loss is off)"),
    ({"zero_one": {"weight": -1}}, "zero_one.weight must be >= 0"),
    ({"fairdarts": {"threshold": 1.5}}, "fairdarts.threshold is a sigmoid weight in (0, 1)"),
    ({"fairdarts": {"derivation": "top1"}}, "fairdarts.derivation"),
])
def test_refusals_name_the_key_and_the_fix(sections, message):
    with pytest.raises(UserError) as err:
        config(**sections)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_derivation_is_refused_at_derivation():
    with pytest.raises(UserError, match="derivation 'sample' is not available for the sigmoid weighting"):
        supernet().genotype("sample")


def test_presets():
    cifar = noisydarts.resolve_config(preset="fairdarts-cifar10")
    assert (cifar["edge"]["weighting"], cifar["zero_one"], cifar["fairdarts"]) == (
        "sigmoid", {"weight": 10.0, "form": "l2"}, {"derivation": "threshold", "threshold": 0.85})
    assert (cifar["batch_size"], cifar["epochs"], cifar["weights"]["lr"], cifar["arch"]["lr"], cifar["arch"]["betas"]) == (
        128, 50, 0.005, 3e-3, [0.9, 0.999])
    assert "none" not in cifar["space"]["ops"] and cifar["train"]["drop_path_prob"] == 0.2
    darts, fair = noisydarts.resolve_config(preset="nb201-darts"), noisydarts.resolve_config(preset="nb201-fairdarts")
    assert {k for k in darts if k != "description" and fair[k] != darts[k]} == {"edge", "zero_one", "arch"}


# --- end to end --------------------------------------------------------------------------------------------------

def test_tiny_search_with_noise_and_partial_channels(tmp_path):
    cfg = config(zero_one={"weight": 10.0}, noise={"enabled": True}, edge={"weighting": "sigmoid", "partial_channels": 2},
                 arch={"lr": 0.05, "betas": [0.9, 0.999]})
    run = search(cfg, out=tmp_path / "run", progress=False)
    assert isinstance(run.genotype, VariableGenotype)
    alpha = run.alpha_history[-1]
    assert all(math.isfinite(v) and 0.0 < v < 1.0 for kind in alpha.values() for row in kind for v in row)
    record = run.metrics[-1]
    assert record["genotype"] == str(run.genotype) and {"genotype_darts", "genotype_threshold_edge"} <= set(record)
    assert set(record["sigmoid_above_threshold"]) == {"normal", "reduce"}

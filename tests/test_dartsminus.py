"""DARTS-' auxiliary skip (``noisydarts.methods.dartsminus``): the edge output against a direct
``sum_k w_k o_k(x) + beta * x``, β on the release's schedule, a derivation that ignores the skip,
β in checkpoints and across a resume, and the spaces that refuse it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.dartsminus import AuxiliarySkip, skip_weight
from noisydarts.nn.mixed import MixedEdge
from noisydarts.nn.ops import FactorizedReduce
from noisydarts.search import search
from noisydarts.spaces import get_space
from noisydarts.spaces.darts.supernet import derive

DARTS_OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5"]
TINY_DARTS = {"name": "darts", "channels": 4, "layers": 3, "nodes": 2}
TINY_NB201 = {"name": "nb201", "channels": 4, "cells_per_stage": 1}


def release_decay_rate(epoch: int, T_max: int = 50, beta: float = 1.0) -> float:
    """The release's ``DecayScheduler.step`` (``src/utils.py``) for ``--decay linear``, T_start = 0."""
    return beta * (T_max - epoch) / (T_max - 0)


def supernet(space=TINY_DARTS, aux=True, **edge):
    cfg = noisydarts.resolve_config(config_file={"space": dict(space), "noise": {"enabled": False}, "device": "cpu",
                                                 "aux_skip": {"enabled": aux}, "edge": edge})
    torch.manual_seed(0)
    return get_space(cfg).build_supernet(cfg, 10)


def test_a_stride_1_edge_is_sum_w_o_x_plus_beta_x():
    skip = AuxiliarySkip(1.0, "linear")
    skip.set_epoch(10, 50)
    assert float(skip.beta) == pytest.approx(0.8)
    edge = MixedEdge(DARTS_OPS, 4, 1, bn_after_pool=True, auxiliary_skip=skip)
    assert isinstance(edge.aux_op, nn.Identity) and not any("auxiliary_skip" in k for k in edge.state_dict())
    x, w = torch.randn(2, 4, 8, 8), torch.softmax(torch.randn(len(DARTS_OPS)), 0)
    direct = sum(w[k] * op(x) for k, op in zip(edge.active, edge.ops)) + 0.8 * x  # 'none' adds nothing
    torch.testing.assert_close(edge(x, w), direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride, partial", [(2, 1), (1, 2), (2, 2)])
def test_stride_2_and_partial_channels_add_beta_aux_of_the_whole_input_outside_the_edge_weight(stride, partial):
    skip = AuxiliarySkip(2.0, "linear")
    skip.set_epoch(25, 50)  # β = 2 (1 - 25/50) = 1
    edge = MixedEdge(DARTS_OPS, 4, stride, bn_after_pool=True, partial_channels=partial, auxiliary_skip=skip)
    plain = MixedEdge(DARTS_OPS, 4, stride, bn_after_pool=True, partial_channels=partial)
    plain.load_state_dict({k: v for k, v in edge.state_dict().items() if not k.startswith("aux_op.")})
    if stride == 2:  # the release's MixedOp: FactorizedReduce(C, C, affine=False) on a stride-2 edge
        assert isinstance(edge.aux_op, FactorizedReduce) and edge.aux_op.bn.weight is None
    x, w, scale = torch.randn(2, 4, 8, 8), torch.softmax(torch.randn(len(DARTS_OPS)), 0), torch.tensor(0.3)
    aux = edge.aux_op(x)  # the whole input, all 4 channels, not the 1/K that goes through the ops
    assert aux.shape == (2, 4, 8 // stride, 8 // stride)
    torch.testing.assert_close(edge(x, w, scale), plain(x, w, scale) + 1.0 * aux, rtol=1e-5, atol=1e-6)


def test_beta_follows_the_release_schedule_on_every_edge():
    model = supernet()
    edges = [m for m in model.modules() if isinstance(m, MixedEdge)]
    assert edges and all(e._auxiliary_skip[0] is model.auxiliary_skip for e in edges)
    for epoch, expected in ((0, 1.0), (25, 0.5), (49, 0.02)):
        model.set_epoch(epoch, 50)
        assert float(model.auxiliary_skip.beta) == pytest.approx(release_decay_rate(epoch)) == pytest.approx(expected)
    assert [skip_weight(e, 50, 1.0, "cosine") for e in (0, 25)] == pytest.approx(
        [(1 + math.cos(math.pi * e / 50)) / 2 for e in (0, 25)])  # the release's "cosine"
    assert skip_weight(30, 50, 0.7, "constant") == 0.7  # the release without --decay
    # the aux convs of the stride-2 edges are network weights, never architecture parameters
    aux = {id(p) for e in edges if e.aux_op is not None for p in e.aux_op.parameters()}
    reduce_edges = [e for e in edges if e.stride == 2]
    assert reduce_edges and all(isinstance(e.aux_op, FactorizedReduce) for e in reduce_edges)
    assert aux <= {id(p) for p in model.weight_parameters()} and not aux & {id(p) for p in model.arch_parameters()}


@pytest.mark.parametrize("space", [TINY_DARTS, TINY_NB201])
def test_derivation_ignores_the_auxiliary_skip(space):
    with_skip, without = supernet(space, aux=True), supernet(space, aux=False)
    torch.manual_seed(3)
    for kind in with_skip.kinds:
        alpha = torch.randn_like(with_skip.arch[f"alpha_{kind}"])
        with torch.no_grad():
            with_skip.arch[f"alpha_{kind}"].copy_(alpha)
            without.arch[f"alpha_{kind}"].copy_(alpha)
    with_skip.set_epoch(0, 50)  # β = 1: the skip is at full strength
    assert with_skip.genotype() == without.genotype()
    if space is TINY_DARTS:
        w = with_skip.arch_weights()
        assert with_skip.genotype() == derive(w["normal"], w["reduce"], with_skip.op_names, with_skip.edge_list)
    assert set(with_skip.arch_parameters()) == set(with_skip.arch.values())  # no β or skip in the architecture


def test_beta_is_saved_with_the_supernet_and_a_resumed_search_ends_as_the_full_one(tmp_path):
    model = supernet()
    model.set_epoch(30, 50)
    fresh = supernet()
    fresh.load_state_dict(model.state_dict())
    assert float(fresh.auxiliary_skip.beta) == pytest.approx(0.4)

    config = {"epochs": 2, "batch_size": 16, "data": {"name": "cifar10-mini", "limit": 32, "resolution": 16},
              "space": dict(TINY_NB201), "noise": {"enabled": False}, "aux_skip": {"enabled": True},
              "arch": {"lr": 3.0e-3}, "plots": False, "device": "cpu"}
    full = search(config, out=tmp_path / "full", progress=False)
    assert all(math.isfinite(m[k]) for m in full.metrics for k in ("train_loss", "val_loss", "train_acc"))
    search(config, out=tmp_path / "part", progress=False, stop_after=1)
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["model"]
    assert float(state["auxiliary_skip.beta"]) == 1.0  # epoch 0 of 2
    resumed = search(resume=tmp_path / "part", progress=False)
    end = {name: torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["model"] for name in ("full", "part")}
    assert float(end["full"]["auxiliary_skip.beta"]) == float(end["part"]["auxiliary_skip.beta"]) == 0.5
    torch.testing.assert_close(end["full"]["arch.alpha_cell"], end["part"]["arch.alpha_cell"], atol=1e-6, rtol=0)
    assert resumed.genotype == full.genotype


def test_recomputed_edges_give_the_same_loss_gradients_and_bn_statistics():
    plain, recomputed = supernet(), supernet({**TINY_DARTS, "checkpoint": True})
    recomputed.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    results = []
    for model in (plain, recomputed):
        model.train()
        model.set_epoch(5, 10)
        loss = model.training_loss(x, y)[0]
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()], model.state_dict()))
    (loss_a, grads_a, state_a), (loss_b, grads_b, state_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all((a is None and b is None) or torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b))
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a if "running" in k)  # BNs updated once


@pytest.mark.parametrize("space", [{"name": "mbv2"}])
def test_spaces_without_the_skip_refuse_it_in_one_line(space):
    with pytest.raises(UserError) as e:
        noisydarts.resolve_config(config_file={"space": space, "aux_skip": {"enabled": True}})
    assert str(e.value) == (f"the {space['name']} space cannot use aux_skip.enabled=true (the DARTS- auxiliary skip): "
                            "set aux_skip.enabled=false")


@pytest.mark.parametrize("section, message", [
    ({"enabled": True, "beta": 0.0}, "aux_skip.beta must be a number > 0"),
    ({"enabled": True, "schedule": "step"}, "aux_skip.schedule must be one of linear, cosine, constant"),
    ({"beta": 0.5}, "aux_skip.beta=0.5 is set, but aux_skip.enabled is false"),
])
def test_bad_values_are_refused_in_one_line(section, message):
    with pytest.raises(UserError) as e:
        noisydarts.resolve_config(config_file={"space": dict(TINY_DARTS), "aux_skip": section})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_presets_follow_the_release():
    for preset, ops in (("nb201-darts-minus", 5), ("darts-minus-cifar10", 8)):
        cfg = noisydarts.resolve_config(preset)
        assert cfg["aux_skip"] == {"enabled": True, "beta": 1.0, "schedule": "linear"} and cfg["epochs"] == 50
        assert len(cfg["space"]["ops"]) == ops and cfg["estimator"]["name"] == "first_order"
        assert [skip_weight(e, cfg["epochs"]) for e in range(50)] == pytest.approx([release_decay_rate(e) for e in range(50)])

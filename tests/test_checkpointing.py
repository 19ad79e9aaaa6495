"""``space.checkpoint``: the same search with and without recomputation, and less kept.

Tolerance: a recomputed edge runs the same kernels on the same inputs with the replayed RNG
state, and the backward pass adds the same gradients in the same order, so on CPU the results are
bit-identical (checked with ``torch.equal``). Should a platform pick another kernel for the
recomputation (it never has here), relax to float rounding: ``rtol=1e-6``.
"""

import copy

import pytest
import torch

import noisydarts
from noisydarts.nn import recompute as checkpointing
from noisydarts.errors import UserError
from noisydarts.methods.estimators import StepContext
from noisydarts.methods.estimators.base import loss_at
from noisydarts.search import Searcher, cross_entropy
from noisydarts.runtime.device import autocast
from noisydarts.spaces import build_supernet

from conftest import TINY_SEARCH


def merge(base: dict, layer: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in layer.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

NOISY = {"noise": {"enabled": True, "lambda": 0.5}, "device": "cpu", "data": {"limit": 16}, "batch_size": 4}


def _search_state(tmp_path, cfg: dict, checkpoint: bool, steps: int = 2) -> tuple[dict, int]:
    """Model state (alpha, weights, BN buffers) and momentum after ``steps`` search steps; and
    how many parts the forward passes recomputed."""
    cfg = noisydarts.resolve_config(None, cfg, [f"space.checkpoint={str(checkpoint).lower()}"])
    s = Searcher(cfg, tmp_path / f"ckpt{checkpoint}", progress=False)
    s.model.train()
    s.model.set_epoch(0, cfg["epochs"])
    train_batches, val_batches = iter(s.train_batches.epoch(0)), iter(s.arch_batches.epoch(0))
    ctx = StepContext(loss_fn=cross_entropy, weight_optimizer=s.w_opt, weight_lr=cfg["weights"]["lr"])
    calls = []
    original = checkpointing.checkpoint
    checkpointing.checkpoint = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        for _ in range(steps):
            s.search_step(next(train_batches), next(val_batches), ctx, s.model.weight_parameters(), autocast(cfg, s.device))
    finally:
        checkpointing.checkpoint = original
    assert all(p.requires_grad for p in s.model.parameters())  # frozen parameters are unfrozen again
    state = {k: v.clone() for k, v in s.model.state_dict().items() if torch.is_tensor(v)}
    state.update({f"weighting.{k}": v.clone() for k, v in s.model.weighting.state_dict().items() if torch.is_tensor(v)})
    state.update({f"momentum.{i}": st["momentum_buffer"].clone() for i, st in enumerate(s.w_opt.state.values())})
    state.update({f"adam.{i}": st["exp_avg"].clone() for i, st in enumerate(s.a_opt.state.values())})
    return state, len(calls)


def _assert_same(off: dict, on: dict):
    assert off.keys() == on.keys()
    for k in off:
        assert torch.equal(off[k], on[k]), k


ESTIMATORS = {
    "first_order": {"estimator": {"name": "first_order"}},
    "second_order": {"estimator": {"name": "second_order"}},             # functional_call at w', w+ and w-
    "second_order_exact": {"estimator": {"name": "second_order", "exact": True}},  # double backward
    "amended": {"estimator": {"name": "amended", "eta": 0.1}},           # Hessian-vector products
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_search_steps_are_identical_with_and_without_checkpointing(tmp_path, name):
    cfg = merge(TINY_SEARCH, merge(NOISY, ESTIMATORS[name]))
    off, none = _search_state(tmp_path, cfg, False)
    on, recomputed = _search_state(tmp_path, cfg, True)
    assert none == 0 and recomputed > 0
    _assert_same(off, on)
    # BN running statistics updated once per training forward, recomputations not counted
    counts = {k: int(v) for k, v in on.items() if k.endswith("num_batches_tracked") and ".edges." in k}
    forwards = {"first_order": 2, "second_order": 5, "second_order_exact": 3, "amended": 3}[name]  # per step
    assert set(counts.values()) == {2 * forwards}


@pytest.mark.parametrize("extra", [
    {"edge": {"weighting": "edge_norm", "partial_channels": 2}},                 # PC-DARTS
    {"edge": {"weighting": "si_vdnas"}},                                         # per-sample weights
    {"space": {"name": "nb201", "channels": 4, "cells_per_stage": 1}},
    {"space": {"name": "amended", "channels": 4, "layers": 3, "nodes": 2}},
], ids=["pc_darts", "si_vdnas", "nb201", "amended_s2"])
def test_methods_and_spaces_are_identical_with_and_without_checkpointing(tmp_path, extra):
    cfg = copy.deepcopy(TINY_SEARCH)
    if "space" in extra:
        cfg["space"] = {}
    cfg = merge(cfg, merge(NOISY, extra))
    off, _ = _search_state(tmp_path, cfg, False, steps=1)
    on, recomputed = _search_state(tmp_path, cfg, True, steps=1)
    assert recomputed > 0
    _assert_same(off, on)


def _saved_bytes(net, x, y) -> int:
    """Bytes of activations autograd keeps outside the recomputed parts (parameters excluded)."""
    params = {p.untyped_storage()._cdata for p in net.parameters()}
    saved = {}

    def pack(t):
        if t.untyped_storage()._cdata not in params:
            saved.setdefault(t.untyped_storage()._cdata, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net.training_loss(x, y)
    return sum(saved.values())


def test_checkpointing_and_freezing_keep_less():
    cfg = noisydarts.resolve_config(None, {"space": {"channels": 8, "layers": 3, "nodes": 3}, "noise": {"enabled": True}})
    net = build_supernet(cfg, 10).train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    everything = _saved_bytes(net, x, y)
    with checkpointing.frozen(net.arch_parameters()):  # the weight step
        weight_step = _saved_bytes(net, x, y)
    net.checkpoint = True
    recomputed = _saved_bytes(net, x, y)
    assert weight_step < 0.9 * everything   # the op outputs are kept only for alpha's gradient
    assert recomputed < 0.25 * everything   # cell inputs, node states and the cells' preprocessing


def test_bf16_autocast_and_functional_call_replay():
    """Recomputation under bf16 autocast (the CUDA path; run here on CPU) and inside
    torch.func.functional_call with other weights gives the first pass's numbers."""
    cfg = noisydarts.resolve_config(None, {"space": {"channels": 4, "layers": 3, "nodes": 2}, "noise": {"enabled": True}})
    net = build_supernet(cfg, 10).train()
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    shifted = {n: (p.detach() + 0.01).requires_grad_() for n, p in net.named_parameters() if not n.startswith("arch.")}
    results = []
    for checkpoint in (False, True):
        net.checkpoint = checkpoint
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net.training_loss(x, y)[0]
        bf16 = torch.autograd.grad(loss, net.arch_parameters())
        torch.manual_seed(4)
        loss = loss_at(net, cross_entropy, (x, y), shifted)  # torch.func.functional_call at other weights
        other = torch.autograd.grad(loss, list(shifted.values()) + net.arch_parameters())
        results.append(bf16 + other)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_config_values():
    assert noisydarts.resolve_config(None, {})["space"]["checkpoint"] == "auto"
    assert checkpointing.resolve_checkpoint("auto", "cpu") is False
    assert checkpointing.resolve_checkpoint("auto", "cuda") is True
    assert checkpointing.resolve_checkpoint(True, "cpu") is True
    for space in ("darts", "nb201", "amended", "mbv2"):
        with pytest.raises(UserError, match="space.checkpoint must be true, false or auto"):
            noisydarts.resolve_config(None, {"space": {"name": space}}, ["space.checkpoint=sometimes"])

"""Architecture-loss regularizers (``noisydarts.methods.regularizers``): a term added through the
method parts reaches ``Supernet.arch_regularizer()`` and the architecture gradient, whatever the
weighting, and composes with the one a weighting brings (SI-VDNAS' KL)."""

from __future__ import annotations

import pytest
import torch

import noisydarts
from noisydarts.methods.estimators import StepContext, build_estimator
from noisydarts.methods.parts import build_parts
from noisydarts.methods.regularizers import Regularizer
from noisydarts.search import cross_entropy
from noisydarts.spaces import get_space


class AlphaL2(Regularizer):
    """``weight * sum ||alpha_kind||^2``: a tiny second user of the seam."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, supernet):
        return self.weight * sum(supernet.arch[f"alpha_{kind}"].square().sum() for kind in supernet.kinds)


def build(weighting: str, l2: float | None):
    cfg = noisydarts.resolve_config(config_file={
        "space": {"name": "darts", "channels": 4, "layers": 3, "nodes": 2}, "edge": {"weighting": weighting},
        "noise": {"enabled": False}, "device": "cpu"})
    space = get_space(cfg)
    parts = space.method_parts(cfg)  # what Space.build_supernet does, with one more term in the parts
    if l2 is not None:
        parts.regularizers.append(AlphaL2(l2))
    torch.manual_seed(0)
    model = space.make_supernet(cfg, parts, 10)
    model.add_regularizers(parts.regularizers)
    model.set_search_data(100, 50)
    return model


@pytest.mark.parametrize("weighting", ["softmax", "si_vdnas"])
def test_an_added_regularizer_is_summed_and_changes_the_arch_gradient_by_its_own(weighting):
    model = build(weighting, 0.01)
    alpha = [model.arch[f"alpha_{kind}"] for kind in model.kinds]
    direct = 0.01 * sum(a.square().sum() for a in alpha)
    kl = model.regularizers[0](model) if weighting == "si_vdnas" else None
    expected = direct if kl is None else kl + direct
    assert torch.equal(model.arch_regularizer().detach(), expected.detach())

    model.train()
    model.begin_step()
    estimator = build_estimator({"estimator": {"name": "first_order"}})
    g = torch.Generator().manual_seed(1)
    batch = lambda: (torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g))
    train, val = batch(), batch()
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.05)
    params = model.arch_parameters()

    def grads():
        for p in params:
            p.grad = None
        torch.manual_seed(5)  # the same noise in both runs
        estimator.step(model, train, val, StepContext(cross_entropy, w_opt, 0.05))
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]

    with_l2 = grads()
    l2 = model.regularizers[-1]
    del model.regularizers[-1]
    without = grads()
    model.regularizers.append(l2)
    own = torch.autograd.grad(l2(model), params, allow_unused=True)
    for a, b, e, p in zip(with_l2, without, own, params):
        torch.testing.assert_close(a - b, torch.zeros_like(p) if e is None else e, atol=1e-6, rtol=1e-5)
    assert any(e is not None and e.abs().sum() > 0 for e in own)


def test_the_softmax_brings_no_regularizer_and_si_vdnas_its_kl():
    cfg = noisydarts.resolve_config(config_file={"space": {"name": "nb201", "channels": 4, "cells_per_stage": 1}})
    assert build_parts(cfg).regularizers == []
    assert build("softmax", None).arch_regularizer() is None
    model = build("si_vdnas", None)
    assert torch.equal(model.arch_regularizer().detach(), model.weighting.kl().detach())  # kl_weight 1: the KL unscaled
    assert not any(k.startswith("regularizers.") for k in model.state_dict())  # stateless: checkpoints unchanged

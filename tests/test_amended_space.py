"""Amended-DARTS search spaces (S1 edge-fixed, S2 deep), search-time regularizers and presets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisydarts.search import resolve_config
from noisydarts.methods.estimators import StepContext, build_estimator
from noisydarts.methods.estimators.base import loss_at
from noisydarts.search import cross_entropy
from noisydarts.spaces import build_supernet
from noisydarts.spaces.amended import DeepSupernet
from noisydarts.spaces.darts import DartsSupernet, fixed_edges


def test_fixed_edges_and_architecture_counts_of_the_paper():
    assert fixed_edges(4) == [(2, 0), (2, 1), (3, 0), (3, 2), (4, 0), (4, 3), (5, 0), (5, 4)]
    # Sec. 4.1.3: S1 has 3.3e13 architectures (7 ops on 16 edges), S2 1.5e48 (2 ops, 8 edges, 20 cells).
    assert f"{7 ** 16:.1e}" == "3.3e+13"
    assert f"{2 ** (8 * 20):.1e}" == "1.5e+48"


def test_s1_searches_ops_only_and_derivation_keeps_both_edges():
    cfg = resolve_config("amended-s1", overrides=["space.channels=4", "space.layers=3"])
    model = build_supernet(cfg, 10)
    assert [tuple(p.shape) for p in model.arch_parameters()] == [(8, 7), (8, 7)]
    with torch.no_grad():
        for p in model.arch_parameters():
            p.copy_(torch.randn_like(p))
    genotype = model.genotype()
    for gene, w in ((genotype.normal, model.arch_weights()["normal"]), (genotype.reduce, model.arch_weights()["reduce"])):
        # every edge kept (two per node, in ranked order), each with its best op
        kept = sorted((2 + k // 2, s, op) for k, (op, s) in enumerate(gene))
        best = [model.op_names[int(i)] for i in w.argmax(1)]
        assert kept == sorted((t, s, best[e]) for e, (t, s) in enumerate(fixed_edges(4)))


def test_auxiliary_head_and_dropout_enter_the_search_loss():
    torch.manual_seed(0)
    model = DartsSupernet(10, channels=2, layers=3, nodes=1, ops=["skip_connect", "avg_pool_3x3"], aux_weight=0.4, dropout=0.3)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,))
    torch.manual_seed(1)
    loss, logits = model.training_loss(x, y)
    torch.manual_seed(1)
    main, aux = model._forward(x)
    assert aux is not None and aux.shape == (2, 10)
    assert torch.allclose(loss, F.cross_entropy(main, y) + 0.4 * F.cross_entropy(aux, y))
    torch.manual_seed(1)
    assert torch.equal(cross_entropy(model, x, y), loss)  # what the estimators differentiate
    # loss_at with one seed repeats the same dropout mask; the global RNG is left as it was.
    state = torch.get_rng_state()
    assert torch.equal(loss_at(model, cross_entropy, (x, y), seed=5), loss_at(model, cross_entropy, (x, y), seed=5))
    assert torch.equal(torch.get_rng_state(), state)
    model.eval()
    assert model._forward(x)[1] is None and torch.equal(model(x), model(x))
    plain = DartsSupernet(10, channels=2, layers=3, nodes=1, ops=["skip_connect", "avg_pool_3x3"]).train()
    assert plain.aux_head is None
    assert torch.allclose(plain.training_loss(x, y)[0], F.cross_entropy(plain(x), y))


def test_s2_has_an_alpha_per_cell_each_used_by_its_cell():
    cfg = resolve_config("amended-s2", overrides=["space.channels=2", "space.layers=6", "space.aux_weight=0"])
    model = build_supernet(cfg, 10)
    assert isinstance(model, DeepSupernet) and model.kinds == tuple(f"cell{i}" for i in range(6))
    alphas = model.arch_parameters()
    assert [tuple(p.shape) for p in alphas] == [(8, 2)] * 6
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,))
    grads = torch.autograd.grad(model.training_loss(x, y)[0], alphas)
    assert all(g.abs().sum() > 0 for g in grads)
    genotype = model.genotype()
    assert len(genotype.cells) == 6 and genotype.reductions == (False, False, True, False, True, False)
    assert genotype.count("skip_connect") + genotype.count("sep_conv_3x3") == 6 * 8
    from noisydarts.spaces import get_space

    assert get_space("amended").genotype_metrics(genotype)["skip_reduce"] == genotype.count("skip_connect", "reduce")


def test_presets_have_the_papers_settings():
    for name, space in (("amended-s1", "darts"), ("amended-s2", "amended")):
        cfg = resolve_config(name)
        assert cfg["space"]["name"] == space and cfg["space"]["edges"] == "fixed" and cfg["space"]["channels"] == 36
        assert cfg["estimator"] == {"name": "amended", "eta": 0.1}
        assert (cfg["epochs"], cfg["batch_size"]) == (100, 96)
        assert cfg["arch"] | {"projection": None} == {"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3,
                                                      "projection": None}
        assert cfg["data"]["cutout"] > 0 and cfg["space"]["dropout"] > 0 and cfg["space"]["aux_weight"] > 0
    assert resolve_config("amended-s2")["space"]["layers"] == 20


def test_estimators_on_a_darts_supernet_with_noise():
    """Every estimator runs on the real supernet (float64, NoisyDARTS noise). The finite
    difference agrees with the exact double backward at a small step r (the noise sample is
    reused); the remaining ~1.5% with noise is the derivative through sigma = lambda * std(x),
    which the noise treats as a constant (detached) and a finite difference cannot. (At DARTS'
    r = 0.01 this 2-channel net's ReLU/BN kinks make the finite difference far off.)"""
    torch.manual_seed(0)
    model = build_supernet(resolve_config(overrides=[
        "space.channels=2", "space.layers=3", "space.nodes=2", "space.edges=fixed", "noise.lambda=0.5",
        "space.ops=[skip_connect, sep_conv_3x3, avg_pool_3x3]"]), 10).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    train, val = (x, torch.tensor([1, 2])), (x.flip(0), torch.tensor([3, 4]))
    opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    ctx = StepContext(cross_entropy, opt, 0.05)

    def grad_of(name, **keys):
        est = build_estimator(resolve_config(overrides=[f"estimator.name={name}"] + [f"estimator.{k}={v}" for k, v in keys.items()]))
        for p in model.arch_parameters():
            p.grad = None
        torch.manual_seed(3)
        est.step(model, train, val, ctx)
        return torch.cat([p.grad.flatten() for p in model.arch_parameters()])

    exact, fd = grad_of("second_order", exact="true"), grad_of("second_order", r="0.00001")
    assert float((exact - fd).norm() / exact.norm()) < 0.03
    assert float((exact - grad_of("first_order")).norm() / exact.norm()) > 0.5
    assert torch.equal(grad_of("amended", eta=0.0), grad_of("first_order"))
    assert not torch.allclose(grad_of("amended"), grad_of("first_order"))
    assert all(p.grad is None for p in model.weight_parameters())

"""PC-DARTS: partial channels with edge normalization, against the formula of the PC-DARTS release.

A node is ``x_j = sum_i beta_hat_ij * f_ij(x_i)`` with ``beta_hat`` the softmax of ``beta`` over
the edges entering j, and ``f_ij(x) = shuffle_K(cat(sum_o w_o o(x[:, :C/K]), bypass(x[:, C/K:])))``
(bypass: identity, or 2x2 max-pool at stride 2). ``beta_hat`` multiplies the whole edge output,
bypass channels included. The reference below computes exactly that, written out here.
"""

import pytest
import torch
import torch.nn.functional as F

from noisydarts.nn.mixed import MixedEdge
from noisydarts.nn.ops import DARTS_OPS
from noisydarts.spaces.darts import DartsSupernet, derive
from noisydarts.spaces.nb201 import NB201Supernet, ResNetReduction

K = 4


def shuffle(x, groups):
    """Channel shuffle as an explicit permutation: output channel j*groups + g is input g*(C/groups) + j."""
    per = x.shape[1] // groups
    return x[:, [g * per + j for j in range(per) for g in range(groups)]]


def reference_edge(edge: MixedEdge, x, w, scale, fold_only=False):
    c = x.shape[1] // K
    x_op, bypass = x[:, :c], x[:, c:]
    ops = dict(zip([edge.op_names[k] for k in edge.active], edge.ops))
    mixed = sum(w[k] * ops[name](x_op) for k, name in enumerate(edge.op_names) if name != "none")
    if edge.stride == 2:
        bypass = F.max_pool2d(bypass, 2, 2)
    if fold_only:  # what edge normalization computed before the fix: beta_hat on the op part only
        return shuffle(torch.cat([scale * mixed, bypass], 1), K)
    return scale * shuffle(torch.cat([mixed, bypass], 1), K)


def beta_hat(beta, edge_list):
    """softmax of beta over the edges that enter the same node, node by node."""
    out = torch.empty_like(beta)
    for t in {t for t, _ in edge_list}:
        rows = [k for k, (tt, _) in enumerate(edge_list) if tt == t]
        out[rows] = torch.softmax(beta[rows], 0)
    return out


def reference_darts_cell(cell, s0, s1, w, bh, fold_only=False):
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    for target in sorted({t for t, _ in cell.edge_list}):
        states.append(sum(reference_edge(cell.edges[k], states[s], w[k], bh[k], fold_only)
                          for k, (t, s) in enumerate(cell.edge_list) if t == target))
    return torch.cat(states[2:], 1)


def reference_darts_network(net, x, fold_only=False):
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        w = torch.softmax(net.arch[f"alpha_{kind}"], -1)
        bh = beta_hat(net.arch[f"beta_{kind}"], net.edge_list)
        s0, s1 = s1, reference_darts_cell(cell, s0, s1, w, bh, fold_only)
    return net.classifier(net.pool(s1).flatten(1))


def _randomize_arch(net):
    with torch.no_grad():
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))


def _grads(out, params, seed=1):
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad((out * r).sum(), params)


@pytest.fixture
def darts_pc():
    net = DartsSupernet(10, channels=8, layers=3, nodes=4, ops=DARTS_OPS, weighting="edge_norm",
                        partial_channels=K).double()
    _randomize_arch(net)
    return net


def test_darts_k4_cells_match_the_pc_darts_formula(darts_pc):
    """Outputs and alpha/beta gradients of a normal and a reduction cell with 14 edges at K=4."""
    net = darts_pc
    with torch.no_grad():
        s0 = s1 = net.stem(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    for cell in net.cells[:2]:  # normal (C=8), reduction (C=16)
        kind = "reduce" if cell.reduction else "normal"
        alpha, beta = net.arch[f"alpha_{kind}"], net.arch[f"beta_{kind}"]
        out = cell(s0, s1, net.weighting(kind), net.weighting.edge_weights(kind))
        ref = reference_darts_cell(cell, s0, s1, torch.softmax(alpha, -1), beta_hat(beta, net.edge_list))
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-12, rtol=0)
        for g, g_ref in zip(_grads(out, [alpha, beta]), _grads(ref, [alpha, beta])):
            assert g.abs().sum() > 0 and torch.allclose(g, g_ref, atol=1e-10, rtol=0)
        # The fix matters: with beta_hat on the op part only, the cell computes something else.
        old = reference_darts_cell(cell, s0, s1, torch.softmax(alpha, -1), beta_hat(beta, net.edge_list), fold_only=True)
        assert (old - ref).abs().mean() > 0.1 * ref.abs().mean()
        s0, s1 = s1, out.detach()


def test_darts_k4_network_and_beta_gradient_through_the_bypass(darts_pc):
    net = darts_pc
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    params = net.arch_parameters()
    out, ref = net(x), reference_darts_network(net, x)
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)
    grads, ref_grads = _grads(out, params), _grads(ref, params)
    for g, g_ref in zip(grads, ref_grads):
        assert torch.allclose(g, g_ref, atol=1e-9, rtol=0)
    # dL/dbeta has a bypass term: it differs from the gradient of the op-part-only formula
    old_grads = _grads(reference_darts_network(net, x, fold_only=True), params)
    names = [n for n, _ in net.named_parameters() if n.startswith("arch.")]
    beta_idx = names.index("arch.beta_normal")
    assert not torch.allclose(grads[beta_idx], old_grads[beta_idx], atol=1e-3)


def test_nb201_k4_network_matches_the_pc_darts_formula():
    net = NB201Supernet(10, channels=8, cells_per_stage=1, weighting="edge_norm", partial_channels=K).double()
    _randomize_arch(net)
    edges = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert net.arch_edges() == {"cell": edges}

    def reference(x):
        w = torch.softmax(net.arch["alpha_cell"], -1)
        bh = beta_hat(net.arch["beta_cell"], edges)
        x = net.stem(x)
        for layer in net.layers:
            if isinstance(layer, ResNetReduction):
                x = layer(x)
                continue
            nodes = [x]
            for target in (1, 2, 3):
                nodes.append(sum(reference_edge(layer[k], nodes[s], w[k], bh[k]) for k, (t, s) in enumerate(edges) if t == target))
            x = nodes[-1]
        return net.classifier(net.head(x))

    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    out, ref = net(x), reference(x)
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)
    for g, g_ref in zip(_grads(out, net.arch_parameters()), _grads(ref, net.arch_parameters())):
        assert g.abs().sum() > 0 and torch.allclose(g, g_ref, atol=1e-9, rtol=0)


def test_edge_scale_without_partial_channels_is_folded_exactly():
    """K=1: scaling the edge output is scaling the op weights, bit for bit (the old formula)."""
    edge = MixedEdge(list(DARTS_OPS), 4, 1, bn_after_pool=True)
    x = torch.randn(2, 4, 8, 8)
    w, s = torch.softmax(torch.randn(8), 0), torch.rand(())
    assert torch.equal(edge(x, w, s), edge(x, w * s))
    assert torch.equal(edge(x, w, None), edge(x, w))


def test_derivation_ranks_softmax_alpha_times_beta_hat():
    """W = softmax(alpha) * beta_hat picks the top-2 incoming edges (PC-DARTS genotype())."""
    net = DartsSupernet(10, channels=8, layers=3, nodes=4, ops=DARTS_OPS, weighting="edge_norm", partial_channels=K)
    ops = list(DARTS_OPS)
    with torch.no_grad():
        for kind in net.kinds:
            net.arch[f"alpha_{kind}"].zero_()
            net.arch[f"beta_{kind}"].zero_()
        # node 3 (edges 2, 3, 4 from 0, 1, 2): edge 2 has the largest softmax(alpha), but a small beta
        a = net.arch["alpha_normal"]
        a[2, ops.index("sep_conv_3x3")] = 3.0
        a[3, ops.index("max_pool_3x3")] = 2.0
        a[4, ops.index("skip_connect")] = 2.0
        net.arch["beta_normal"][2] = -3.0
    g = net.genotype()
    W = {kind: (torch.softmax(net.arch[f"alpha_{kind}"], -1)
                * beta_hat(net.arch[f"beta_{kind}"], net.edge_list)[:, None]).detach() for kind in net.kinds}
    assert g == derive(W["normal"], W["reduce"], ops, net.edge_list)
    assert [j for _, j in g.normal[2:4]] == [1, 2]  # edge from 0 dropped despite its largest alpha
    assert torch.allclose(net.arch_weights()["normal"], W["normal"])


# --- presets and the evaluation recipe they carry ------------------------------------------------

@pytest.mark.parametrize("name", ["pc-darts-cifar10", "pc-darts-cifar100", "pc-darts-gp-cifar10", "pc-darts-gp-cifar100",
                                  "nb201-pc-darts", "nb201-pc-darts-gp"])
def test_pc_darts_presets(name):
    import noisydarts

    cfg = noisydarts.resolve_config(name)
    assert cfg["edge"] == {"weighting": "edge_norm", "partial_channels": 4}
    assert (cfg["batch_size"], cfg["epochs"], cfg["warmup_epochs"]) == (256, 50, 15)
    assert cfg["weights"] == {"lr": 0.1, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0}
    assert (cfg["arch"]["lr"], cfg["arch"]["weight_decay"], cfg["arch"]["betas"]) == (6e-4, 1e-3, [0.5, 0.999])
    assert cfg["estimator"]["name"] == "first_order" and not cfg["noise"]["enabled"]
    gp = "-gp" in name
    assert cfg["arch"]["projection"] == {"groups": "edge_in" if gp else "none", "order": "random",
                                         "include_beta": False, "length": "through"}
    if name.startswith("nb201"):
        assert cfg["space"]["name"] == "nb201" and cfg["space"]["channels"] == 16 and cfg["train"]["drop_path_prob"] is None
    else:
        assert cfg["space"]["ops"] == list(DARTS_OPS) and (cfg["space"]["channels"], cfg["space"]["layers"]) == (16, 8)
        assert cfg["data"]["name"] == name.rsplit("-", 1)[1] and cfg["train"]["drop_path_prob"] == 0.3
    if gp:  # the GP preset is the base preset with projection on, nothing else
        base = noisydarts.resolve_config(name.replace("-gp", ""))
        base["arch"]["projection"] = cfg["arch"]["projection"]
        assert {k: v for k, v in cfg.items() if k != "description"} == {k: v for k, v in base.items() if k != "description"}


def test_train_takes_the_search_runs_evaluation_settings(tiny_config, tmp_path):
    """`noisydarts train RUN` layers the search config's train section over the space's recipe."""
    from noisydarts.search import search
    from noisydarts.train import resolve_config, search_recipe

    run = tmp_path / "search"
    result = search(tiny_config | {"epochs": 1, "train": {"drop_path_prob": 0.3}}, out=run, progress=False)
    assert search_recipe(run) == search_recipe(run / "genotype.json") == {"drop_path_prob": 0.3}
    assert search_recipe(str(tmp_path)) == {} and search_recipe("darts_v2") == {}
    cfg = resolve_config({"epochs": 1}, arch=result.genotype, search=search_recipe(run))
    assert cfg["drop_path_prob"] == 0.3 and cfg["epochs"] == 1
    assert resolve_config(None, ["drop_path_prob=0.1"], arch=result.genotype, search=search_recipe(run))["drop_path_prob"] == 0.1
    assert resolve_config(None, arch=result.genotype)["drop_path_prob"] == 0.2  # the DARTS recipe without it
    plain = tmp_path / "plain"
    search(tiny_config | {"epochs": 1}, out=plain, progress=False)
    assert search_recipe(plain) == {}


def test_channel_shuffle_is_the_permutation_and_keeps_channels_last():
    from noisydarts.nn.mixed import channel_shuffle

    x = torch.randn(2, 16, 5, 7)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        out = channel_shuffle(t, K)
        assert torch.equal(out, shuffle(x, K))
        assert out.is_contiguous(memory_format=torch.channels_last) == (t is not x)
    # so a K=4 cell's output stays channels_last (no format conversions downstream)
    net = DartsSupernet(10, channels=8, layers=3, nodes=2, weighting="edge_norm", partial_channels=K)
    net = net.to(memory_format=torch.channels_last)
    s = net.stem(torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last))
    out = net.cells[0](s, s, net.weighting("normal"), net.weighting.edge_weights("normal"))
    assert out.is_contiguous(memory_format=torch.channels_last)

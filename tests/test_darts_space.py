"""The DARTS cell space: supernet shapes, parameters, derivation, pluggable edge parts."""

import pytest
import torch

from noisydarts.spaces import get_space

from noisydarts.nn.mixed import MixedEdge
from noisydarts.methods.noise import SkipNoise
from noisydarts.nn.ops import DARTS_OPS, NOISYDARTS_OPS
from noisydarts.spaces.darts import DartsSupernet, dense_edges, derive


def test_supernet_shapes_and_cells():
    net = DartsSupernet(10, channels=4, layers=5, nodes=4)
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert len(net.cells[0].edges) == 14
    x = torch.randn(2, 3, 16, 16)
    s0 = s1 = net.stem(x)
    w = {k: net.weighting(k) for k in net.kinds}
    shapes = []
    for cell in net.cells:
        s0, s1 = s1, cell(s0, s1, w["reduce" if cell.reduction else "normal"])
        shapes.append(tuple(s1.shape))
    # a cell outputs 4 nodes x C channels; reductions halve the size and double C
    assert shapes == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 32, 8, 8), (2, 64, 4, 4), (2, 64, 4, 4)]
    assert net(x).shape == (2, 10)


def test_architecture_parameters_are_named_and_separate():
    net = DartsSupernet(10, channels=4, layers=3, nodes=4, ops=DARTS_OPS)
    names = [n for n, _ in net.named_parameters() if n.startswith("arch.")]
    assert names == ["arch.alpha_normal", "arch.alpha_reduce"]
    assert net.arch["alpha_normal"].shape == (14, 8)
    arch_ids = {id(p) for p in net.arch_parameters()}
    assert not arch_ids & {id(p) for p in net.weight_parameters()}
    assert len(arch_ids) + len(net.weight_parameters()) == len(list(net.parameters()))
    assert "arch.alpha_normal" in net.state_dict()


def test_search_bn_has_no_affine_parameters():
    net = DartsSupernet(10, channels=4, layers=3, nodes=2)
    bns = [m for m in net.cells.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.affine for bn in bns)


def test_none_is_never_computed_but_matches_computing_it():
    """Skipping 'none' changes no number: output and alpha gradient equal the explicit sum."""
    from noisydarts.nn.ops import build_op

    names = ["none", "skip_connect", "max_pool_3x3"]
    edge = MixedEdge(names, 4, 1, bn_after_pool=True)
    assert len(edge.ops) == 2
    x = torch.randn(2, 4, 8, 8)
    alpha = torch.randn(3, requires_grad=True)
    out = edge(x, torch.softmax(alpha, 0))
    (g,) = torch.autograd.grad(out.square().sum(), alpha)
    alpha2 = alpha.detach().clone().requires_grad_()
    w = torch.softmax(alpha2, 0)
    explicit = w[0] * build_op("none", 4, 1, False)(x) + w[1] * edge.ops[0](x) + w[2] * edge.ops[1](x)
    (g2,) = torch.autograd.grad(explicit.square().sum(), alpha2)
    assert torch.allclose(out, explicit, atol=1e-6)
    assert torch.allclose(g, g2, atol=1e-5)


def test_the_fused_weighted_sum_equals_the_explicit_one_with_per_sample_weights_to_second_order():
    """sum_k w_k o_k(x) by fused multiply-adds: the output, the weight gradient and a
    Hessian-vector product (second-order DARTS differentiates twice) equal the explicit sum."""
    torch.manual_seed(0)
    names = ["none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3"]
    edge = MixedEdge(names, 4, 1, bn_after_pool=True).double()
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    for shape in ((4,), (4, 3, 1, 1, 1)):  # one weight per op; one per op and sample (SI-VDNAS)
        w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        v = torch.randn_like(w)
        results = []
        for fused in (True, False):
            out = edge(x, w) if fused else sum(w[k] * op(x) for k, op in zip(edge.active, edge.ops))
            (g,) = torch.autograd.grad(out.square().sum(), w, create_graph=True)
            (hv,) = torch.autograd.grad((g * v).sum(), w)
            results.append((out, g, hv))
        for a, b in zip(*results):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_derivation_on_hand_made_weights():
    ops = list(DARTS_OPS)
    edges = dense_edges(4)
    w = torch.full((14, 8), 0.01)
    # node 2: edges 0 (from 0), 1 (from 1)
    w[0, ops.index("none")] = 0.9          # 'none' is ignored for ranking and choice
    w[0, ops.index("sep_conv_3x3")] = 0.3
    w[1, ops.index("skip_connect")] = 0.5
    # node 3: edges 2,3,4 from 0,1,2 -> keep 4 and 2
    w[2, ops.index("dil_conv_5x5")] = 0.4
    w[3, ops.index("max_pool_3x3")] = 0.2
    w[4, ops.index("sep_conv_5x5")] = 0.6
    # node 4: edges 5..8 from 0..3 -> keep 8 and 6
    w[6, ops.index("avg_pool_3x3")] = 0.7
    w[8, ops.index("dil_conv_3x3")] = 0.8
    # node 5: edges 9..13 from 0..4 -> keep 13 and 9
    w[9, ops.index("sep_conv_3x3")] = 0.35
    w[13, ops.index("skip_connect")] = 0.45
    g = derive(w, w, ops, edges)
    assert g.normal == (("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2), ("dil_conv_5x5", 0),
                        ("dil_conv_3x3", 3), ("avg_pool_3x3", 1), ("skip_connect", 4), ("sep_conv_3x3", 0))
    assert g.normal_concat == (2, 3, 4, 5)
    assert g.reduce == g.normal


def test_supernet_genotype_is_derived_from_softmax_alpha():
    net = DartsSupernet(10, channels=4, layers=3, nodes=4, ops=NOISYDARTS_OPS)
    with torch.no_grad():
        net.arch["alpha_normal"].zero_()
        net.arch["alpha_normal"][:, NOISYDARTS_OPS.index("skip_connect")] = 5.0
    g = net.genotype()
    assert g.count("skip_connect", "normal") == 8
    assert get_space("darts").genotype_metrics(g)["skip_normal"] == 8


def test_noise_reaches_every_skip_in_training_only():
    noise = SkipNoise(0.5)
    net = DartsSupernet(10, channels=4, layers=3, nodes=2, noise=noise)
    x = torch.randn(4, 3, 8, 8)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
    without = DartsSupernet(10, channels=4, layers=3, nodes=2, noise=SkipNoise(0.5), noise_on_reduction=False)
    skips = [e.transforms[e.op_names.index("skip_connect")] for c in without.cells for e in c.edges]
    strides = [e.stride for c in without.cells for e in c.edges]
    assert all((t is None) == (s == 2) for t, s in zip(skips, strides))


def test_edge_normalization_weights_sum_to_one_per_node():
    net = DartsSupernet(10, channels=4, layers=3, nodes=4, weighting="edge_norm")
    assert "arch.beta_normal" in dict(net.named_parameters())
    with torch.no_grad():
        net.arch["beta_normal"].copy_(torch.randn(14))
    ew = net.weighting.edge_weights("normal")
    targets = torch.tensor([t for t, _ in dense_edges(4)])
    for t in targets.unique():
        assert ew[targets == t].sum().item() == pytest.approx(1.0)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_partial_channels_keep_shapes():
    net = DartsSupernet(10, channels=8, layers=3, nodes=2, partial_channels=4)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    edge = net.cells[0].edges[0]
    assert edge.ops[-1][1].in_channels == 2  # dil_conv_5x5 (ReLU, depthwise, ...) sees C/K channels


@pytest.mark.parametrize("k, stride, size", [(3, 1, 8), (5, 1, 8), (3, 2, 8), (5, 2, 8), (3, 2, 7), (3, 1, 7)])
def test_dilated_depthwise_by_phase_equals_dilated_conv(k, stride, size):
    """The phase decomposition computes the same numbers as the dilated conv, and the same
    input and weight gradients, in both memory formats."""
    from noisydarts.nn.ops import DepthwiseConv2d

    conv = DepthwiseConv2d(6, k, stride, k - 1, dilation=2).double()
    for channels_last in (False, True):
        x = torch.randn(3, 6, size, size, dtype=torch.float64)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        y = conv(x)
        ref = torch.nn.functional.conv2d(x, conv.weight, None, stride, k - 1, 2, 6)
        assert torch.allclose(y, ref, atol=1e-12)
        g = torch.randn_like(ref)
        gx, gw = torch.autograd.grad(y, (x, conv.weight), g)
        rx, rw = torch.autograd.grad(ref, (x, conv.weight), g)
        assert torch.allclose(gx, rx, atol=1e-12) and torch.allclose(gw, rw, atol=1e-12)


@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduce_equals_two_offset_stride2_convs(size):
    """FactorizedReduce subsamples before its 1x1 convs: the same numbers as the DARTS
    formulation (stride-2 1x1 convs on the input and on the input shifted by one pixel)."""
    from noisydarts.nn.ops import FactorizedReduce

    fr = FactorizedReduce(4, 6).double().eval()
    x = torch.randn(2, 4, size, size, dtype=torch.float64)
    r = torch.relu(x)
    shifted = torch.nn.functional.pad(r[:, :, 1:, 1:], (0, size % 2, 0, size % 2))
    ref = fr.bn(torch.cat([fr.conv_1(r), fr.conv_2(shifted)], 1))
    assert torch.allclose(fr(x), ref, atol=1e-12)

"""RobustDARTS' spaces S1-S4 (Zela et al., ICLR 2020) on the DARTS supernet: the op sets as the
release gives them, the noise op as the paper defines it, every method searching them, derivation
by each edge's own ops, and a found S-space cell trained by ``noisydarts train``."""

from __future__ import annotations

import json

import pytest
import torch

import noisydarts
from noisydarts.cli import main as cli_main
from noisydarts.config import load_preset
from noisydarts.errors import UserError
from noisydarts.nn.ops import NoiseOp, build_op
from noisydarts.spaces import get_space
from noisydarts.spaces.darts import Genotype, derive
from noisydarts.spaces.darts.op_sets import OP_SETS, S1, UNIFORM, columns
from noisydarts.spaces.darts.supernet import dense_edges

DARTS = get_space("darts")
TINY_S = {"channels": 4, "layers": 3, "nodes": 4}  # S1's pairs need the 4-node cell
#: Every method's DARTS-space preset (benchmarks/robust_darts_collapse.py runs them in S2 and S3).
METHOD_PRESETS = ["darts-cifar10", "noisydarts-cifar10", "noisydarts-cifar10-release", "amended-s1", "pc-darts-cifar10",
                  "pc-darts-gp-cifar10", "si-vdnas-cifar10", "fairdarts-cifar10", "darts-minus-cifar10",
                  "beta-darts-cifar10", "drnas-cifar10", "sdarts-rs-cifar10", "sdarts-adv-cifar10"]


def s_config(preset: str, op_set: str | None = None, **space) -> dict:
    overrides = {"space": {**TINY_S, "edges": "dense", **space}, "device": "cpu", "batch_size": 2, "plots": False,
                 "epochs": 4, "warmup_epochs": 0}
    if op_set:
        overrides["space"]["op_set"] = op_set
    if preset == "drnas-cifar10":  # K=6 -> 4 needs channels that both divide; S1-S4 have 2 or 3 ops an edge
        overrides["space"]["channels"] = 12
        overrides["drnas"] = {"stage_epochs": [2], "stage_keep_ops": [2]}
    if preset in ("pc-darts-cifar10", "pc-darts-gp-cifar10"):
        overrides["space"]["channels"] = 8
    return noisydarts.resolve_config(preset, overrides)


def edge_op_names(model, kind: str) -> list[list[str]]:
    cell = next(c for c in model.cells if c.reduction == (kind == "reduce"))
    return [list(edge.op_names) for edge in cell.edges]


# --- the op sets -----------------------------------------------------------------------------------

def test_s1_pairs_are_the_releases_and_s2_to_s4_their_fixed_sets():
    # spot checks against automl/RobustDARTS src/spaces.py (primitives_1), edge by edge
    assert len(S1["normal"]) == len(S1["reduce"]) == 14 == len(dense_edges(4))
    assert S1["normal"][0] == ("skip_connect", "dil_conv_3x3")
    assert S1["normal"][5] == S1["normal"][10] == ("max_pool_3x3", "skip_connect")
    assert S1["normal"][12] == S1["normal"][13] == ("dil_conv_3x3", "dil_conv_5x5")
    assert S1["reduce"][1] == ("max_pool_3x3", "dil_conv_3x3")
    assert S1["reduce"][6] == ("max_pool_3x3", "sep_conv_3x3")
    assert S1["reduce"][11:] == (("skip_connect", "dil_conv_5x5"),) * 3
    # skip_connect is one of the pair on 12 of 14 normal edges and 6 of 14 reduction edges
    assert sum("skip_connect" in p for p in S1["normal"]) == 12
    assert sum("skip_connect" in p for p in S1["reduce"]) == 6
    assert all(len(set(p)) == 2 for pairs in S1.values() for p in pairs)
    assert UNIFORM == {"s2": ("skip_connect", "sep_conv_3x3"), "s3": ("none", "skip_connect", "sep_conv_3x3"),
                       "s4": ("noise", "sep_conv_3x3")}
    assert OP_SETS == ("s1", "s2", "s3", "s4")


def test_noise_op_draws_standard_normal_values_in_place_of_its_input():
    torch.manual_seed(0)
    x = torch.full((8, 4, 32, 32), 7.0, requires_grad=True)
    y = build_op("noise", 4, 1, affine=False)(x)
    assert isinstance(build_op("noise", 4, 2, affine=True), NoiseOp)
    assert y.shape == x.shape
    assert abs(float(y.mean())) < 0.02 and abs(float(y.std()) - 1.0) < 0.02  # 32,768 draws of N(0, 1)
    assert not y.requires_grad  # the input never reaches the output: no gradient flows back
    z = build_op("noise", 4, 2, affine=False)(torch.zeros(2, 4, 7, 7))
    assert z.shape == (2, 4, 4, 4)  # the strided input's shape, as a stride-2 sep_conv_3x3 gives
    assert z.shape == build_op("sep_conv_3x3", 4, 2, affine=False)(torch.zeros(2, 4, 7, 7)).shape
    assert sum(p.numel() for p in build_op("noise", 4, 1, affine=True).parameters()) == 0


# --- the presets and the supernet --------------------------------------------------------------------

@pytest.mark.parametrize("op_set", OP_SETS)
def test_preset_searches_its_op_set_on_every_edge(op_set):
    assert load_preset(f"darts-{op_set}")["space"]["op_set"] == op_set
    cfg = s_config(f"darts-{op_set}")
    assert cfg["space"]["ops"] == columns(op_set)  # what the alpha columns are (S1: per-edge pairs)
    model = DARTS.build_supernet(cfg, 10)
    width = 3 if op_set == "s3" else 2
    assert {tuple(model.arch[f"alpha_{k}"].shape) for k in model.kinds} == {(14, width)}
    for kind in model.kinds:
        expected = [list(p) for p in S1[kind]] if op_set == "s1" else [list(UNIFORM[op_set])] * 14
        assert edge_op_names(model, kind) == expected


def test_s1_derivation_names_each_edges_own_ops_as_a_direct_argmax_does():
    torch.manual_seed(3)
    w = {kind: torch.softmax(torch.randn(14, 2), dim=1) for kind in ("normal", "reduce")}
    edges = dense_edges(4)
    genotype = derive(w["normal"], w["reduce"], columns("s1"), edges,
                      {kind: [list(p) for p in pairs] for kind, pairs in S1.items()})

    def direct(kind):  # DARTS' rule written out: per node, the 2 edges with the largest best weight
        gene = []
        for target in range(2, 6):
            incoming = [k for k, (t, _) in enumerate(edges) if t == target]
            best = sorted(incoming, key=lambda k: -float(w[kind][k].max()))[:2]
            gene += [(S1[kind][k][int(w[kind][k].argmax())], edges[k][1]) for k in best]
        return gene

    assert list(genotype.normal) == direct("normal") and list(genotype.reduce) == direct("reduce")


def test_s3_never_derives_none_and_s4_can_derive_noise():
    none_wins = torch.tensor([[0.8, 0.15, 0.05]] * 14)
    g = derive(none_wins, none_wins, columns("s3"), dense_edges(4))
    assert {op for op, _ in (*g.normal, *g.reduce)} == {"skip_connect"}  # the best op besides none
    noise_wins = torch.tensor([[0.7, 0.3]] * 14)
    g = derive(noise_wins, noise_wins, columns("s4"), dense_edges(4))
    assert g.count("noise", "normal") == 8 and g.count("skip_connect", "normal") == 0


@pytest.mark.parametrize("preset", METHOD_PRESETS)
def test_every_method_searches_the_s_spaces(preset):
    """Each method's DARTS-space preset with one of S1-S4 (in turn): the edges hold the op set's
    ops, one search step gives finite numbers, and the derived cell uses only each edge's ops."""
    op_set = OP_SETS[METHOD_PRESETS.index(preset) % 4]
    if op_set == "s4" and preset.startswith("noisydarts"):
        op_set = "s2"  # their noise acts on skip_connect, which S4 has not (refused: the next test)
    cfg = s_config(preset, op_set)
    torch.manual_seed(0)
    model = DARTS.build_supernet(cfg, 10)
    allowed = {kind: ([set(p) for p in S1[kind]] if op_set == "s1" else [set(UNIFORM[op_set])] * 14)
               for kind in model.kinds}
    for kind in model.kinds:
        assert [set(ops) for ops in edge_op_names(model, kind)] == allowed[kind]
    model.train()
    model.set_search_data(8, 8)
    model.set_epoch(0, 4)
    model.begin_step()
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    loss = model.training_loss(x, y)[0]
    reg = model.arch_regularizer()
    total = loss if reg is None else loss + reg
    grads = torch.autograd.grad(total, model.arch_parameters(), allow_unused=True)
    assert torch.isfinite(total) and all(g is None or torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    genotype = model.genotype()
    edges = dense_edges(4)
    for kind in model.kinds:
        nodes = genotype.nodes_of(kind)
        for node, pairs in enumerate(nodes):
            for op, source in pairs:
                k = edges.index((node + 2, source))
                assert op in allowed[kind][k] and op != "none"


def test_refusals_name_the_problem_in_one_line():
    with pytest.raises(UserError, match=r"space.op_set must be one of s1, s2, s3, s4"):
        s_config("darts-cifar10", "s5")
    with pytest.raises(UserError, match=r"space.op_set=s1 .* set space.nodes=4 and space.edges=dense"):
        s_config("darts-cifar10", "s1", nodes=3)
    with pytest.raises(UserError, match=r"space.op_set=s1 .* set space.nodes=4 and space.edges=dense"):
        s_config("darts-cifar10", "s1", edges="fixed")
    for preset in ("noisydarts-cifar10", "noisydarts-cifar10-release"):  # noise / skip drop-path on skips
        with pytest.raises(UserError, match=r"acts on skip_connect, which space.op_set=s4 does not have"):
            s_config(preset, "s4")  # refused with the config, before anything runs
    with pytest.raises(UserError, match=r"noise.skip_drop_path=0.3 .*acts on skip_connect, which space.ops does not have"):
        noisydarts.resolve_config("nb201-noisydarts-release", {"space": {"ops": ["none", "nor_conv_3x3"]},
                                                               "noise": {"enabled": False}})
    with pytest.raises(UserError, match="op_set"):  # Amended-DARTS' deep space has its own op list
        noisydarts.resolve_config("amended-s2", {"space": {"op_set": "s2"}})


# --- after the search -----------------------------------------------------------------------------

def test_an_s4_cell_trains_and_its_noise_edges_have_no_parameters():
    noise_cell = [("noise", 0), ("sep_conv_3x3", 1)] * 4
    with_noise = Genotype(normal=noise_cell, normal_concat=[2, 3, 4, 5], reduce=noise_cell, reduce_concat=[2, 3, 4, 5])
    assert Genotype.parse(str(with_noise)) == with_noise
    net = DARTS.build_network(with_noise, "cifar", 10, {"channels": 8, "layers": 3, "auxiliary": False})
    noise_ops = [m for m in net.modules() if isinstance(m, NoiseOp)]
    assert len(noise_ops) == 3 * 4  # 3 cells, 4 noise edges each
    assert all(sum(p.numel() for p in op.parameters()) == 0 for op in noise_ops)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    first, second = net(x), net(x)
    assert first.shape == (2, 10) and torch.isfinite(first).all()
    assert not torch.equal(first, second)  # the noise op draws in evaluation too (the release's NoiseOp)


def test_search_in_s2_then_train_the_found_cell(tmp_path, capsys):
    tiny = ["--data", "cifar10-mini", "--set", "data.limit=32", "--set", "batch_size=16", "--set", "epochs=1",
            "--set", "space.channels=4", "--set", "space.layers=3", "--set", "plots=false", "--set", "device=cpu"]
    assert cli_main(["search", "--preset", "darts-s2", *tiny, "--out", str(tmp_path / "s2")]) == 0
    genotype = json.loads((tmp_path / "s2" / "genotype.json").read_text())
    ops = {op for cell in ("normal", "reduce") for op, _ in genotype["genotype"][cell]}
    assert ops <= {"skip_connect", "sep_conv_3x3"}
    train = ["--set", "epochs=1", "--set", "batch_size=16", "--set", "data.limit=32", "--set", "network.channels=4",
             "--set", "network.layers=3", "--set", "plots=false", "--set", "device=cpu"]
    assert cli_main(["train", str(tmp_path / "s2"), *train, "--out", str(tmp_path / "t")]) == 0
    trained = torch.load(tmp_path / "t" / "weights.pt", weights_only=True)
    assert trained["genotype"] == genotype["genotype"] and trained["text"] == genotype["text"]

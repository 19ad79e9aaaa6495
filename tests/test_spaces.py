"""Every registered search space end to end, through the Space registry alone.

A new space is covered by registering it: the parametrized test runs its tiny search, reads the
genotype back, sizes it, trains and evaluates its network for a few steps and exports it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import noisydarts
from noisydarts.benchmark import nb201
from noisydarts.cli import main
from noisydarts.errors import UserError
from noisydarts.models import create_model, info, resolve_genotype
from noisydarts.spaces import SPACES, count_params, genotype_payload, get_space, parse_genotype, space_of
from noisydarts.spaces.amended import CellwiseGenotype
from noisydarts.train import evaluate, export, load_trained, resolve_config, train

# The README's "Adding a search space" example: registering it is all it takes to be tested below.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import examples.chain_space  # noqa: E402,F401

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
GOOD_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def tiny_search(space) -> dict:
    return {"space": {"name": space.name, **space.TINY["space"]}, "epochs": 1, "batch_size": 16, "plots": False,
            "data": {"name": "cifar10-mini", "limit": 48, "resolution": 16}, "device": "cpu"}


def tiny_training(space) -> dict:
    return {"epochs": 1, "batch_size": 16, "network": space.TINY["network"], "device": "cpu", "plots": False,
            "data": {"name": "cifar10-mini", "limit": 32, "cutout": 0}}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_from_search_to_export(name, tmp_path):
    space = get_space(name)
    searched = noisydarts.search(tiny_search(space), out=tmp_path / "search", progress=False)
    genotype = searched.genotype
    assert space_of(genotype) is space

    # genotype.json names its space and reads back, through every form an architecture can take
    saved = json.loads((tmp_path / "search" / "genotype.json").read_text())
    assert saved["space"] == name and saved["type"] == type(genotype).__name__
    for form in (tmp_path / "search", tmp_path / "search" / "genotype.json", str(genotype)):
        assert resolve_genotype(form) == genotype
    assert parse_genotype(str(genotype)) == genotype
    assert space.from_json(json.loads(json.dumps(space.to_json(genotype)))) == genotype

    # the space draws its cells and names its alpha rows for the plots
    from noisydarts.viz.run import plot_run

    pngs = {p.name for p in plot_run(tmp_path / "search") if p.suffix == ".png"}
    assert {"cells.png", "dominant_ops.png"} <= pngs and any(n.startswith("alpha_") for n in pngs)

    # info sizes the space's own evaluation network
    family = space.families[0]
    size = info(tmp_path / "search", dataset={"cifar": "cifar10", "imagenet16": "imagenet16-120"}[family])
    assert size["params_m"] > 0 and size["multadds_m"] > 0

    # a few training steps, from the search run directory, then evaluate and export
    trained = train(tmp_path / "search", tiny_training(space), out=tmp_path / "train", progress=False)
    assert resolve_genotype(trained.run_dir) == genotype  # a training run hands its architecture on too
    assert len(trained.metrics) == 1 and trained.metrics[0]["train_loss"] > 0
    result = evaluate(trained.run_dir)
    assert result["images"] > 0 and 0 <= result["top1"] <= result["top5"] <= 100
    path = export(trained.run_dir, "torchscript", tmp_path / "net.ts")
    model, _ = load_trained(trained.run_dir)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_resumes_exactly(name, tmp_path):
    """Stopped after epoch 1 and resumed, a search ends bit for bit where the uninterrupted one
    does (alpha, weights, BN buffers and both optimizers), in every registered space."""
    space = get_space(name)
    cfg = tiny_search(space) | {"epochs": 2}
    full = noisydarts.search(cfg, out=tmp_path / "full", progress=False)
    noisydarts.search(cfg, out=tmp_path / "part", progress=False, stop_after=1)
    resumed = noisydarts.search(resume=tmp_path / "part", progress=False)
    assert str(resumed.genotype) == str(full.genotype)
    a, b = (torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("full", "part"))
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["a_opt"]["state"].keys() == b["a_opt"]["state"].keys()
    for k, state in a["a_opt"]["state"].items():
        assert all(torch.equal(v, b["a_opt"]["state"][k][n]) for n, v in state.items() if torch.is_tensor(v))


def test_nb201_run_directory_sizes_to_the_table_exactly(tmp_path):
    space = get_space("nb201")
    run = noisydarts.search(tiny_search(space), out=tmp_path / "run", progress=False)
    row = nb201.lookup(run.genotype)
    assert info(run.run_dir)["params_m"] == pytest.approx(row.params_m, abs=1e-4)
    assert main(["nb201", "lookup", str(run.run_dir), "--json"]) == 0  # a run directory is a valid argument


@pytest.mark.parametrize("arch", [GOOD_CELL, ALL_SKIP])
def test_training_an_nb201_string_builds_the_benchmark_network_with_its_recipe(arch, tmp_path):
    cfg = resolve_config(arch=resolve_genotype(arch))
    w = cfg["weights"]
    assert (cfg["epochs"], cfg["batch_size"], w["lr"], w["momentum"], w["nesterov"], w["weight_decay"]) == \
        (200, 256, 0.1, 0.9, True, 5e-4)
    assert (w["lr_schedule"], cfg["auxiliary_weight"], cfg["drop_path_prob"], cfg["data"]["cutout"]) == \
        ("cosine", 0.0, 0.0, 0)
    assert cfg["network"] == {"channels": 16, "cells_per_stage": 5}
    result = train(arch, {"epochs": 1, "batch_size": 32, "device": "cpu", "data": {"name": "cifar10-mini", "limit": 32}},
                   out=tmp_path / "nb201", progress=False)
    assert count_params(result.model) == pytest.approx(nb201.lookup(arch).params_m, abs=1e-6)
    assert isinstance(result.model.layers[0], torch.nn.ModuleList)  # the benchmark's cells, not DARTS cells


def test_cellwise_network_counted_by_hand():
    g = CellwiseGenotype(cells=[[("sep_conv_3x3", 0), ("skip_connect", 1)], [("max_pool_3x3", 0), ("sep_conv_3x3", 1)],
                                [("skip_connect", 0), ("dil_conv_3x3", 1)]], reductions=(False, True, False), concat=(2,))
    net = create_model(g, "cifar10", channels=4, auxiliary=False)
    # stem conv 3->12 (3x3) + BN: 324 + 24
    stem = 3 * 12 * 9 + 24
    # cell 0 (C=4): two ReLU-conv1x1-BN preprocessors 12->4 (48 + 8 each); sep_conv_3x3 = 2 x (dw 36 + pw 16 + BN 8)
    cell0 = 2 * (48 + 8) + 2 * (36 + 16 + 8)
    # cell 1 reduces (C=8): preprocess 12->8 (96 + 16) and 4->8 (32 + 16); max pool: 0; sep_conv_3x3 at C=8: 2 x (72 + 64 + 16)
    cell1 = (96 + 16) + (32 + 16) + 2 * (72 + 64 + 16)
    # cell 2 after a reduction: factorized reduce 4->8 (2 x 4x4 convs + BN 16), preprocess 8->8 (64 + 16);
    # skip: identity; dil_conv_3x3 at C=8: dw 72 + pw 64 + BN 16
    cell2 = (2 * 16 + 16) + (64 + 16) + (72 + 64 + 16)
    classifier = 8 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == stem + cell0 + cell1 + cell2 + classifier == 1414
    assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cellwise_figures_bracket_the_published_s2_results():
    """Amended-DARTS reports S2 at 3.6 M params (CIFAR-10) and 5.5 M / 590 M mult-adds (ImageNet);
    its genotype is only in a lost figure, so check that those lie between an all-skip and an
    all-sep_conv_3x3 S2 network of the searched shape (20 cells, fixed edges)."""
    from noisydarts.spaces.darts import fixed_edges

    space = get_space("amended")
    reductions = tuple(i in (6, 13) for i in range(20))
    sizes = {}
    for op in ("skip_connect", "sep_conv_3x3"):
        g = CellwiseGenotype([[(op, s) for _, s in fixed_edges(4)]] * 20, reductions, (2, 3, 4, 5))
        sizes[op] = (space.info(g, "cifar10"), space.info(g, "imagenet"))
    low, high = sizes["skip_connect"], sizes["sep_conv_3x3"]
    assert low[0]["params_m"] < 3.6 < high[0]["params_m"]
    assert low[1]["params_m"] < 5.5 < high[1]["params_m"] and low[1]["multadds_m"] < 590 < high[1]["multadds_m"]


def test_cellwise_genotype_text_and_json_round_trip(tmp_path):
    g = CellwiseGenotype(cells=[[("sep_conv_3x3", 0), ("skip_connect", 1)]] * 3, reductions=(False, True, False),
                         concat=(2,))
    assert CellwiseGenotype.parse(str(g)) == g == parse_genotype(str(g))
    (tmp_path / "genotype.json").write_text(json.dumps(genotype_payload(g)))
    assert resolve_genotype(tmp_path) == g
    assert get_space("amended").from_json(json.loads(json.dumps(g.to_dict()))) == g
    with pytest.raises(UserError, match="reduction flag"):
        CellwiseGenotype(cells=[[("sep_conv_3x3", 0), ("skip_connect", 1)]], reductions=(False, True), concat=(2,))


def test_genotype_of_one_space_in_another_space_is_one_line(tmp_path, capsys):
    nb = resolve_genotype(GOOD_CELL)
    with pytest.raises(UserError, match="the darts space cannot build a network from a NB201Arch"):
        get_space("darts").build_network(nb, "cifar", 10)
    with pytest.raises(UserError, match="cannot build a network"):
        get_space("nb201").info(resolve_genotype("noisydarts_a"))
    # a genotype.json that names the wrong space
    bad = tmp_path / "genotype.json"
    bad.write_text(json.dumps({"space": "nb201", "genotype": resolve_genotype("noisydarts_a").to_dict()}))
    for args in (["info", str(bad)], ["train", str(bad), "--set", "epochs=1"], ["nb201", "lookup", "noisydarts_a"],
                 ["info", GOOD_CELL, "--dataset", "imagenet"]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)


def test_every_search_and_training_run_hands_on(tmp_path, capsys):
    """The end of a search prints the next commands with the real path, and they work."""
    args = ["search", "--preset", "nb201-quick", "--set", "epochs=1", "--set", "data.limit=48", "--set",
            "space.channels=4", "--no-progress", "--no-plots", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"noisydarts train {tmp_path / 's'}" in out and f"noisydarts report {tmp_path / 's'}" in out
    assert out.count(str(resolve_genotype(tmp_path / "s"))) == 1  # the cell is printed once (in the benchmark summary)
    assert "the all-skip_connect cell (collapse) 54.30 %" in out
    assert main(["info", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params_m"] == pytest.approx(
        nb201.lookup(resolve_genotype(tmp_path / "s")).params_m, abs=1e-4)


def test_create_model_factory():
    net = create_model("noisydarts_a", dataset="cifar100", channels=8, layers=5)
    assert net.classifier.out_features == 100 and len(net.cells) == 5
    nb = create_model(GOOD_CELL, dataset="imagenet16-120")
    assert nb.classifier.out_features == 120
    with pytest.raises(UserError, match="unknown network key 'cells_per_stage'"):
        create_model("noisydarts_a", cells_per_stage=2)
    with pytest.raises(UserError, match="evaluation networks for the cifar, imagenet16"):
        create_model(GOOD_CELL, dataset="imagenet")

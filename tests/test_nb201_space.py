"""The NAS-Bench-201 search space: derivation, supernet, stand-alone network, search, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import noisydarts
from noisydarts.benchmark import nb201
from noisydarts.models import resolve_genotype as load_any_genotype
from noisydarts.spaces.darts import Genotype
from noisydarts.benchmark.nb201 import NB201_OPS, NB201Arch
from noisydarts.spaces.nb201 import NB201Network, NB201Supernet, derive

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"

TINY = {"space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "data": {"name": "cifar10-mini", "limit": 64, "resolution": 16}, "epochs": 1, "batch_size": 16}


def test_derive_takes_argmax_including_none():
    w = torch.zeros(6, 5)
    for edge, op in enumerate([0, 1, 2, 3, 4, 0]):  # none wins on edges 0 and 5
        w[edge, op] = 1.0
    arch = derive(w, NB201_OPS)
    assert arch.ops == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none")
    assert str(arch) == ("|none~0|+|skip_connect~0|nor_conv_1x1~1|+"
                         "|nor_conv_3x3~0|avg_pool_3x3~1|none~2|")
    assert NB201Arch.parse(str(arch)) == arch
    # A subset of ops maps the column index to the right name.
    assert derive(torch.eye(2).repeat(3, 1), ["skip_connect", "nor_conv_3x3"]).ops == ("skip_connect", "nor_conv_3x3") * 3


def test_supernet_shapes_names_and_search_bn():
    net = NB201Supernet(10, channels=4, cells_per_stage=1)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    final = NB201Network(ALL_SKIP, 10, channels=4, cells_per_stage=1)
    assert final(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert all(bn.affine and bn.track_running_stats for bn in final.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    assert [n for n, _ in net.named_parameters() if n.startswith("arch.")] == ["arch.alpha_cell"]
    assert net.arch["alpha_cell"].shape == (6, 5)
    cell_bns = [m for cell in net.layers if isinstance(cell, torch.nn.ModuleList)
                for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(cell_bns) == 2 * 3 * 6  # nor_conv_1x1 and nor_conv_3x3 on 6 edges of 3 cells
    assert all(bn.weight is None and bn.running_mean is None for bn in cell_bns)
    from noisydarts.spaces import get_space

    metrics = get_space("nb201").genotype_metrics(net.genotype())
    assert set(metrics) == {"nb201_index", "cifar10_test", "cifar100_test", "imagenet16_test", "skip_count"}


@pytest.mark.parametrize("index", [0, 6111, 1835, 100])
def test_network_parameter_count_matches_table(index):
    row = nb201.by_index(index)
    net = NB201Network(row.arch, 10)  # the benchmark's CIFAR-10 network: C=16, N=5
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(row.params_m, abs=1e-6)


def _metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_search_logs_benchmark_numbers_and_noise_matters(tmp_path):
    def run(name, noise):
        cfg = {**TINY, "noise": {"enabled": noise}}
        return noisydarts.search(cfg, out=tmp_path / name, progress=False)

    on, on_again, off = run("on", True), run("on2", True), run("off", False)
    rec = _metrics(on.run_dir)[-1]
    arch = NB201Arch.parse(rec["genotype"])
    expected = nb201.lookup(arch)
    assert rec["nb201_index"] == expected.index and rec["cifar10_test"] == expected.cifar10_test
    assert rec["skip_count"] == arch.count("skip_connect")
    assert isinstance(on.genotype, NB201Arch)
    assert on.alpha_history == on_again.alpha_history  # same seed, same result
    assert on.alpha_history != off.alpha_history  # the noise changes the search
    saved = json.loads((on.run_dir / "genotype.json").read_text())
    assert saved["genotype"] == str(on.genotype)
    assert load_any_genotype(on.run_dir) == on.genotype
    assert load_any_genotype(ALL_SKIP) == NB201Arch.parse(ALL_SKIP)


def test_load_any_genotype_still_reads_darts():
    g = load_any_genotype("Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], "
                          "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])")
    assert isinstance(g, Genotype)


def test_cli_lookup_json_and_malformed(capsys):
    from noisydarts.cli import main

    assert main(["nb201", "lookup", ALL_SKIP, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["index", "arch", "cifar10_test", "cifar100_test", "imagenet16_test", "params_m", "multadds_m"]
    assert data["cifar10_test"] == pytest.approx(54.30, abs=0.01)
    assert main(["nb201", "lookup", "|skip_connect~0|+|bogus~0|"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "malformed" in err


def test_nb201_presets_resolve():
    from noisydarts.search import resolve_config
    from noisydarts.cli import DEFAULT_PRESET

    assert DEFAULT_PRESET == "nb201-quick"
    darts, noisy = resolve_config("nb201-darts"), resolve_config("nb201-noisydarts")
    assert darts["space"] == noisy["space"] == {"name": "nb201", "channels": 16, "cells_per_stage": 5, "ops": list(NB201_OPS),
                                                "checkpoint": "auto"}
    assert (darts["noise"]["enabled"], noisy["noise"]["enabled"], noisy["noise"]["lambda"]) == (False, True, 0.2)
    assert darts["weights"]["weight_decay"] == 5e-4 and darts["epochs"] == 50 and darts["batch_size"] == 64
    assert resolve_config("nb201-quick")["space"]["name"] == "nb201"


def test_the_remedies_nb201_presets_differ_from_nb201_darts_only_in_their_method():
    from noisydarts.search import resolve_config

    darts = resolve_config("nb201-darts")
    amended, sivdnas = resolve_config("nb201-amended"), resolve_config("nb201-si-vdnas")
    assert amended["estimator"] == {"name": "amended", "eta": 0.1}          # Amended-DARTS Sec. 4.1.1
    assert (sivdnas["edge"]["weighting"], sivdnas["warmup_epochs"]) == ("si_vdnas", 15)  # SI-VDNAS Sec. 4.2
    for cfg, method_keys in ((amended, {"estimator"}), (sivdnas, {"edge", "warmup_epochs"})):
        differing = {k for k in darts if k != "description" and cfg[k] != darts[k]}
        assert differing == method_keys


def test_progress_line_shows_benchmark_accuracies():
    from noisydarts.search import summary_line

    record = {"epoch": 3, "train_loss": 1.0, "train_acc": 60.0, "val_loss": 1.1, "val_acc": 55.0, "epoch_time": 2.0,
              "genotype": ALL_SKIP, "skip_count": 6, "cifar10_test": 54.2967, "cifar100_test": 15.6, "imagenet16_test": 16.3}
    line = summary_line(record)
    assert "skip_count=6" in line and "C10 54.30" in line and "C100 15.60" in line and "IN16 16.30" in line

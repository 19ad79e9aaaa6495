"""The divergence guard (issue 10, class 2): non-finite loss, weights or alpha stop a run with exit
code 3, keep its last good checkpoint and never turn into a genotype, plots or a benchmark result."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from noisydarts.cli import main
from noisydarts.errors import Diverged
from noisydarts.runtime.guard import first_nonfinite_epoch, nonfinite

from conftest import TINY_SEARCH, TINY_TRAIN

TINY_CLI = ["--preset", "quick", "--set", "epochs=2", "--set", "data.limit=48", "--set", "data.resolution=16",
            "--set", "space.channels=4", "--set", "space.layers=3", "--set", "space.nodes=2", "--set", "batch_size=16",
            "--no-progress"]
TINY_NB201 = ["--preset", "nb201-quick", "--set", "epochs=1", "--set", "data.limit=48", "--set", "data.resolution=16",
              "--set", "space.channels=4", "--set", "batch_size=16", "--no-progress"]


@pytest.mark.parametrize("values, tensors, bad", [
    ({"loss": 1.0}, {"w": [torch.ones(3)]}, []),
    ({"loss": math.nan}, {}, ["loss"]),
    ({"loss": math.inf}, {}, ["loss"]),
    ({"loss": 1.0}, {"w": [torch.ones(3), torch.tensor([1.0, math.nan])]}, ["w"]),
    ({}, {"a": [torch.tensor([math.inf, -math.inf])], "w": [torch.ones(2)]}, ["a"]),  # inf - inf is caught too
    ({}, {"a": [torch.tensor([-math.inf])], "w": [torch.zeros(2, dtype=torch.long)]}, ["a"]),  # ints are skipped
    ({"x": None}, {"a": [torch.full((2,), 3e38)]}, ["a"]),  # a sum that overflows: diverged weights
])
def test_nonfinite_names_what_is_not_finite(values, tensors, bad):
    assert nonfinite(values, tensors) == bad


@pytest.mark.parametrize("bad", [math.nan, math.inf, "0.5", None, True])
def test_first_nonfinite_epoch(bad):
    records = [{"epoch": 1, "alpha": {"normal": [[0.5, 0.5]]}}, {"epoch": 2, "alpha": {"normal": [[bad, 1.0]]}}]
    assert first_nonfinite_epoch(records) == 2 and first_nonfinite_epoch(records[:1]) is None


def _poison_after(cls, epoch_index, pick):
    """Make the object's tensors NaN after its epoch ``epoch_index`` (0-based) trains."""
    original = cls.train_epoch

    def train_epoch(self, epoch):
        out = original(self, epoch)
        if epoch == epoch_index:
            with torch.no_grad():
                t = pick(self.model)
                t[(0,) * t.dim()] = math.nan
        return out

    return train_epoch


@pytest.mark.parametrize("what", ["alpha", "weight"])
def test_search_stops_and_keeps_the_last_good_checkpoint(what, tmp_path, monkeypatch):
    from noisydarts.search import Searcher, search

    pick = (lambda m: m.arch_parameters()[0]) if what == "alpha" else (lambda m: m.weight_parameters()[0])
    monkeypatch.setattr(Searcher, "train_epoch", _poison_after(Searcher, 1, pick))
    out = tmp_path / "run"
    cfg = copy.deepcopy(TINY_SEARCH) | {"epochs": 3, "plots": True}
    with pytest.raises(Diverged, match="diverged in epoch 2") as info:
        search(cfg, out=out, progress=False)
    assert info.value.exit_code == 3 and "keeps the checkpoint of epoch 1" in str(info.value)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert not (out / "genotype.json").exists() and not (out / "plots").exists() and not (out / "report.html").exists()
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("setting", ["weights.lr=1e30", "arch.lr=1e30", "noise.lambda=1e30"])
def test_cli_search_divergence_is_exit_code_3(setting, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--out", str(out), *TINY_CLI, "--set", setting])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1 and "diverged in epoch 1" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]  # no genotype, plots, report or checkpoint


def test_nb201_divergence_prints_no_benchmark_result(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--out", str(out), *TINY_NB201, "--set", "weights.lr=1e30"])
    captured = capsys.readouterr()
    assert code == 3 and "CIFAR-10" not in captured.out and "diverged" in captured.err
    assert not (out / "genotype.json").exists()


def test_training_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from noisydarts.train import Trainer, resolve_config, train

    monkeypatch.setattr(Trainer, "train_epoch", _poison_after(Trainer, 1, lambda m: next(m.parameters())))
    out = tmp_path / "run"
    with pytest.raises(Diverged, match="training diverged in epoch 2"):
        train("noisydarts_a", resolve_config(copy.deepcopy(TINY_TRAIN) | {"epochs": 3}), out=out, progress=False)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in torch.load(out / "best.pt", weights_only=True)["model"].values()
               if v.is_floating_point())
    assert not (out / "weights.pt").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_cli_train_divergence_is_exit_code_3(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "noisydarts_a", "--out", str(out), "--set", "lr=1e30", "--set", "epochs=1",
                 "--set", "network.channels=8", "--set", "network.layers=3", "--set", "data.name=cifar10-mini", "--set", "data.limit=32",
                 "--set", "batch_size=16", "--set", "grad_clip=null", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "training diverged in epoch 1" in err and len(err.strip().splitlines()) == 1
    assert not (out / "best.pt").exists() and not (out / "weights.pt").exists()


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_and_report_of_a_run_with_nonfinite_alpha(command, search_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    record["alpha"]["normal"][0][0] = math.nan
    (run / "metrics.jsonl").write_text("\n".join([lines[0], json.dumps(record)]) + "\n")  # json writes NaN
    code = main([command, str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "not finite from epoch 2" in err and len(err.strip().splitlines()) == 1
    assert not (run / "plots").exists()

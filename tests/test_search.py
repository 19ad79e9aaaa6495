"""The search loop end to end on tiny data: it learns, it logs, and it resumes exactly."""

import json

import pytest
import torch
import yaml

import noisydarts
from noisydarts import resolve_config
from noisydarts.errors import UserError
from noisydarts.search import search


def test_one_epoch_lowers_the_training_loss(tiny_config, tmp_path):
    """Train loss measured on a fixed batch before and after one epoch of search."""
    from noisydarts.search import Searcher, cross_entropy

    cfg = noisydarts.resolve_config(config_file=tiny_config | {"epochs": 1, "data": tiny_config["data"] | {"limit": 160}})
    searcher = Searcher(cfg, tmp_path, progress=False)
    x, y = next(iter(searcher.train_batches.epoch(0)))
    searcher.model.eval()
    with torch.no_grad():
        before = cross_entropy(searcher.model, x, y).item()
    for epoch in range(3):
        searcher.train_epoch(epoch)
    searcher.model.eval()
    with torch.no_grad():
        after = cross_entropy(searcher.model, x, y).item()
    assert after < before - 0.05


def test_run_directory_contents(tiny_config, tmp_path):
    out = tmp_path / "run"
    result = search(tiny_config, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "data.json", "genotype.json", "metrics.jsonl"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["space"]["channels"] == 4 and cfg["noise"]["lambda"] == 0.2  # fully resolved
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "alpha", "genotype", "skip_normal", "epoch_time", "lr"):
        assert key in lines[0]
    alpha = torch.tensor(lines[-1]["alpha"]["normal"])
    assert alpha.shape == (5, 7) and torch.allclose(alpha.sum(1), torch.ones(5), atol=1e-4)
    assert lines[0]["lr"] == pytest.approx(0.05) and lines[1]["lr"] < 0.05  # cosine schedule
    assert noisydarts.load_genotype(out) == result.genotype
    assert str(result.genotype) == lines[-1]["genotype"]
    assert result.alpha_history[-1] == lines[-1]["alpha"]


def test_resume_gives_the_same_alpha_and_genotype(tiny_config, tmp_path):
    full = search(tiny_config, out=tmp_path / "full", progress=False)
    part = tmp_path / "part"
    stopped = search(tiny_config, out=part, progress=False, stop_after=1)
    assert len(stopped.metrics) == 1 and not (part / "genotype.json").exists()
    resumed = search(resume=part, progress=False)
    assert resumed.genotype == full.genotype
    a_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    a_res = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    for key in ("arch.alpha_normal", "arch.alpha_reduce"):
        assert torch.allclose(a_full[key], a_res[key], atol=1e-6, rtol=0)
    assert [m["train_loss"] for m in resumed.metrics] == pytest.approx([m["train_loss"] for m in full.metrics])


def test_same_seed_same_result_and_noise_changes_it(tiny_config, tmp_path):
    a = search(tiny_config | {"epochs": 1}, out=tmp_path / "a", progress=False)
    b = search(tiny_config | {"epochs": 1}, out=tmp_path / "b", progress=False)
    c = search(tiny_config | {"epochs": 1, "noise": {"enabled": False}}, out=tmp_path / "c", progress=False)
    assert a.alpha_history == b.alpha_history
    assert a.alpha_history != c.alpha_history


def test_warmup_keeps_alpha_frozen(tiny_config, tmp_path):
    run = search(tiny_config | {"epochs": 2, "warmup_epochs": 1}, out=tmp_path / "w", progress=False)
    from noisydarts.search import Searcher
    start = Searcher(resolve_config(config_file=tiny_config | {"epochs": 2, "warmup_epochs": 1}), tmp_path / "start",
                     progress=False).model.arch_weights()
    start = {k: [[round(float(v), 6) for v in row] for row in w.tolist()] for k, w in start.items()}
    # epoch 1 (warm-up) ends with alpha exactly where the seed put it; epoch 2 trains it
    assert run.alpha_history[0] == start
    assert run.alpha_history[1] != start
    assert run.metrics[0]["train_loss"] > 0


def test_a_warmup_that_outlives_the_run_is_refused(tiny_config):
    with pytest.raises(UserError, match=r"warmup_epochs \(15\) must be below epochs \(12\).*warmup_epochs=3"):
        resolve_config(config_file=tiny_config | {"epochs": 12, "warmup_epochs": 15})


def test_edge_norm_and_partial_channels_plug_into_the_same_loop(tiny_config, tmp_path):
    cfg = tiny_config | {"epochs": 1, "edge": {"weighting": "edge_norm", "partial_channels": 2}}
    result = search(cfg, out=tmp_path / "pc", progress=False)
    state = torch.load(tmp_path / "pc" / "checkpoint.pt", weights_only=False)["model"]
    assert "arch.beta_normal" in state and state["arch.beta_normal"].abs().sum() > 0  # beta was trained
    assert result.genotype.nodes == 2

"""Runs written before the package was split into layers still resume, train and plot, and
resume where the old code would have gone (tests/fixtures/runs-0.1.0/README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import noisydarts
from noisydarts.viz.report import write_report
from noisydarts.viz.run import plot_run

FIXTURE = Path(__file__).parent / "fixtures" / "runs-0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _numbers(records: list[dict]) -> list[dict]:
    """The records without their timings (the only thing that may differ)."""
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in records]


def _close(got, want, where=""):
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), where
    else:
        assert got == want, where


@pytest.fixture
def old_runs(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "runs")
    return tmp_path / "runs"


def test_an_old_search_resumes_as_the_old_code_would_have_run_it_plots_and_trains(old_runs):
    result = noisydarts.search(resume=old_runs / "search", progress=False)
    assert str(result.genotype) == EXPECTED["search"]["genotype"]
    _close(_numbers(result.metrics), _numbers(EXPECTED["search"]["metrics"]), "search")
    pngs = [p for p in plot_run(old_runs / "search") if p.suffix == ".png"]
    assert {p.stem for p in pngs} >= {"alpha_normal", "alpha_reduce", "dominant_ops", "cells"}
    assert all(p.stat().st_size > 1000 for p in pngs)
    assert [p.name for p in write_report([old_runs / "search"])] == ["report.md", "report.html"]
    trained = noisydarts.train(old_runs / "search", {"epochs": 1, "batch_size": 16, "device": "cpu",
                                                     "network": {"channels": 4, "layers": 3, "auxiliary": False},
                                                     "data": {"name": "cifar10-mini", "limit": 32}},
                               out=old_runs / "trained", progress=False)
    assert 0.0 <= trained.test_acc <= 100.0 and (old_runs / "trained" / "weights.pt").is_file()


def test_an_old_training_run_resumes_as_the_old_code_would_have_run_it(old_runs):
    noisydarts.train(None, resume=old_runs / "train", progress=False)
    records = [json.loads(line) for line in (old_runs / "train" / "metrics.jsonl").read_text().splitlines()]
    _close(_numbers(records), _numbers(EXPECTED["train"]["metrics"]), "train")
    assert noisydarts.info(old_runs / "train", "cifar10")["params_m"] > 0

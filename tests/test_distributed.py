"""Data-parallel search and training (issue 14): two CPU processes under
``torchrun --nproc_per_node=2`` with gloo, on tiny supernets (tests/ddp_worker.py).

* α and the weights are bit-identical on both ranks after every scenario;
* with SyncBatchNorm (every rank normalizes with the global batch's statistics) and no noise, a
  few bilevel steps of every estimator equal, to float tolerance, a single process at the global
  batch; so does an epoch of ``noisydarts train``;
* a search stopped after an epoch and resumed under torchrun ends exactly where the
  uninterrupted one does; rank 0 alone wrote the run directory;
* the slices of every global batch are exactly the single process's batch (in memory and streamed);
* a bad launch is one line on rank 0, nothing on the others, exit code 2;
* the Hessian monitor runs on every rank (with SyncBatchNorm, and with σ over all ranks): no hang,
  the same eigenvalue on both ranks, and, without noise, one process's at the global batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import ddp_worker
from noisydarts.runtime import distributed
from noisydarts.cli import main
from noisydarts.data import BatchIterator, ImageDataset, make_batches, open_dataset

SRC = str(Path(__file__).parents[1] / "src")

needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Every scenario of tests/ddp_worker.py under torchrun with two CPU processes."""
    out = tmp_path_factory.mktemp("ddp")
    # One launch for all (each launch costs two torch imports).
    torchrun(out, "search", "steps", "methods", "train", "hessian", "hessian_measure")
    return out


#: What a gloo rank prints when it aborts in C++ (std::terminate), not in our code: seen once in 3
#: full runs under pytest-xdist with the other worker busy, never in a launch of its own.
GLOO_ABORT = "terminate called without an active exception"


def torchrun(out: Path, *scenarios: str, timeout: float = 600) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, str(Path(__file__).parent)]), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).parent / "ddp_worker.py"), str(out), *scenarios]
    r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if r.returncode != 0 and GLOO_ABORT in r.stderr:  # once more, said aloud; a second abort fails
        warnings.warn(f"torchrun: a rank aborted inside gloo ({GLOO_ABORT!r}); launching once more")
        shutil.rmtree(out)  # the runs of the first launch would block the second's
        out.mkdir()
        r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]


@pytest.fixture(scope="module")
def ddp_hessian(ddp):
    """The Hessian monitor's scenarios under torchrun (run by the ``ddp`` launch): seconds each."""
    return ddp


def load(out: Path, name: str, rank: int):
    return torch.load(out / f"{name}.rank{rank}.pt", weights_only=False)


def assert_identical(a, b, where: str = "") -> None:
    """Bit-identical tensors, in nested dicts and lists alike."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@needs_gloo
def test_alpha_and_weights_are_bit_identical_on_both_ranks(ddp):
    for name in ["search_full", "search_resumed"]:
        r0, r1 = load(ddp, name, 0), load(ddp, name, 1)
        assert r0["genotype"] == r1["genotype"]
        assert_identical(r0["model"], r1["model"])  # α, weights and the BN statistics (averaged over ranks)
    for name in ddp_worker.ESTIMATORS:
        assert_identical(load(ddp, f"steps_{name}", 0), load(ddp, f"steps_{name}", 1))
    for name in ddp_worker.METHODS:  # gradient projection, SI-VDNAS masks, partial channels, recomputation
        # mid-epoch: each rank's BN running statistics are still its own (averaged at the epoch's end)
        r0, r1 = ({k: v for k, v in load(ddp, f"method_{name}", r).items()
                   if "running_" not in k and "num_batches" not in k} for r in (0, 1))
        assert_identical(r0, r1)
        assert any("mask" in k for k in r0) == (name == "si_vdnas")
    assert_identical(load(ddp, "train", 0)["model"], load(ddp, "train", 1)["model"])
    assert any(k.startswith("arch.") for k in load(ddp, "search_full", 0)["model"])


@needs_gloo
def test_resume_under_torchrun_is_exact_and_rank_0_alone_wrote_the_runs(ddp):
    full = torch.load(ddp / "full" / "checkpoint.pt", weights_only=True)
    part = torch.load(ddp / "part" / "checkpoint.pt", weights_only=True)
    assert_identical(full["model"], part["model"])
    assert full["epoch"] == part["epoch"] == 2 and full["world_size"] == 2
    assert len(full["rng_ranks"]) == 2 and not torch.equal(full["rng_ranks"][0]["torch"], full["rng_ranks"][1]["torch"])
    metrics = [[json.loads(line) for line in (ddp / run / "metrics.jsonl").read_text().splitlines()]
               for run in ("full", "part")]
    assert [m["epoch"] for m in metrics[0]] == [1, 2]  # one writer: one line per epoch
    assert metrics[0][1]["alpha"] == metrics[1][1]["alpha"] and metrics[0][1]["val_loss"] == metrics[1][1]["val_loss"]
    assert sorted(p.name for p in (ddp / "full").iterdir()) == ["checkpoint.pt", "config.yaml", "data.json",
                                                                 "genotype.json", "metrics.jsonl"]
    assert load(ddp, "search_full", 0)["genotype"] == load(ddp, "search_resumed", 0)["genotype"]


@needs_gloo
@pytest.mark.parametrize("name", list(ddp_worker.ESTIMATORS))
def test_every_estimator_under_torchrun_equals_one_process_at_the_global_batch(ddp, name, tmp_path, monkeypatch):
    """SyncBatchNorm gives each rank the global batch's statistics, so two ranks at 8 images
    compute what one process computes at 16 (noise off: its draws depend on the slice)."""
    monkeypatch.setattr(ddp_worker, "ESTIMATORS", {name: ddp_worker.ESTIMATORS[name]})
    ddp_worker.scenario_steps(tmp_path)
    single, ranked = torch.load(tmp_path / f"steps_{name}.rank0.pt"), load(ddp, f"steps_{name}", 0)
    assert single.keys() == ranked.keys()
    for k in single:
        if k.startswith("step"):  # the architecture gradients of both steps, relative to their size
            scale = single[k].abs().max()
            assert scale > 0
            torch.testing.assert_close(ranked[k], single[k], rtol=0, atol=1e-4 * scale, msg=k)
        elif k.startswith("arch."):  # Adam amplifies rounding where a gradient is ~0: a fraction of lr
            torch.testing.assert_close(ranked[k], single[k], rtol=0, atol=1e-4, msg=k)
        elif single[k].is_floating_point():  # the weights and BatchNorm statistics
            torch.testing.assert_close(ranked[k], single[k], rtol=1e-4, atol=1e-5, msg=k)


@needs_gloo
def test_training_under_torchrun_equals_one_process(ddp, tmp_path):
    ddp_worker.scenario_train(tmp_path)
    single, ranked = torch.load(tmp_path / "train.rank0.pt"), load(ddp, "train", 0)
    for k, v in single["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(ranked["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert ranked["test_acc"] == pytest.approx(single["test_acc"])


@needs_gloo
def test_a_torchrun_run_resumes_in_one_process_with_a_warning(ddp, tmp_path):
    """Another number of processes continues the run (α, weights, optimizers and data order do
    not depend on it), saying once that it is not the same run as before."""
    from noisydarts.search import search

    shutil.copytree(ddp / "part", tmp_path / "part")
    (tmp_path / "part" / "genotype.json").unlink()
    metrics = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "part" / "metrics.jsonl").write_text(metrics[0] + "\n")
    ckpt = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    with pytest.warns(UserWarning, match="ran with 2 process"):
        result = search(resume=tmp_path / "part", progress=False)
    assert len(result.metrics) == 1  # the checkpoint was already at the end: nothing left to run


# --- slices of the global batch (no processes needed) -----------------------------------------------

def test_slices_of_every_global_batch_are_the_single_process_batch():
    torch.manual_seed(1)
    ds = ImageDataset(torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8), torch.arange(37) % 5,
                      ["a", "b", "c", "d", "e"], (0.5,) * 3, (0.25,) * 3)
    idx = torch.arange(3, 37)
    aug = {"crop_padding": 2, "flip": True, "cutout": 3}
    for train in (True, False):
        whole = list(BatchIterator(ds, idx, 12, seed=4, train=train, augment_kwargs=aug).epoch(2))
        for world in (2, 3, 5):
            parts = [list(BatchIterator(ds, idx, 12, seed=4, train=train, augment_kwargs=aug,
                                        shard=(r, world)).epoch(2)) for r in range(world)]
            # 34 images: batches of 12, 12, 10; a last training batch smaller than the ranks is dropped
            assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(whole)
            for b, (x, y) in enumerate(whole):
                assert torch.equal(torch.cat([p[b][0] for p in parts]), x)
                assert torch.equal(torch.cat([p[b][1] for p in parts]), y)
    # A last global batch with fewer images than ranks: dropped from training on every rank alike,
    # kept (its empty slices skipped) for evaluation.
    tail = torch.arange(0, 13)
    assert [len(BatchIterator(ds, tail, 12, seed=0, train=True, shard=(r, 2))) for r in range(2)] == [1, 1]
    evaluated = [list(BatchIterator(ds, tail, 12, seed=0, train=False, shard=(r, 2)).epoch(0)) for r in range(2)]
    assert sum(len(y) for part in evaluated for _, y in part) == 13


def test_a_streamed_folder_decodes_only_the_slice_and_gives_the_same_batches(tmp_path):
    from test_data_streaming import DATA, make_folder

    root = make_folder(tmp_path / "ds", train=6)
    data = {"name": str(root), "resolution": 16, "in_memory": False, **DATA}
    split = open_dataset(data, "train")
    idx = torch.arange(len(split))
    whole = list(make_batches(split, idx, 8, seed=3, train=True, data=data, channels_last=True).epoch(1))
    parts = [make_batches(split, idx, 8, seed=3, train=True, data=data, channels_last=True, shard=(r, 2))
             for r in range(2)]
    sliced = [list(p.epoch(1)) for p in parts]
    assert len(parts[0]._batches.batches[0]) == 4  # the workers are handed this rank's files only
    for b, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([s[b][0] for s in sliced]), x)
        assert torch.equal(torch.cat([s[b][1] for s in sliced]), y)


def test_reductions_are_the_identity_in_one_process():
    grads = [torch.randn(3), None, torch.randn(2, 2)]
    assert distributed.all_reduce_mean(grads, 7) == grads
    assert distributed.agree_nonfinite(["loss", "alpha"], ["alpha"]) == ["alpha"]
    assert distributed.sum_over_ranks([torch.tensor(2.5), 3]) == [2.5, 3.0]
    bn = torch.nn.BatchNorm2d(3)
    sync = distributed.convert_sync_batchnorm(torch.nn.Sequential(bn))[0]
    assert isinstance(sync, distributed.SyncBatchNorm2d)
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(sync(x), bn(x))


# --- bad launches: one line on rank 0, nothing on the others, exit 2 ------------------------------------

@pytest.mark.parametrize("overrides, words", [
    (["batch_size=15"], "batch_size 15 does not divide among the 2 processes"),
    (["distributed.backend=nccl", "device=cpu"], "nccl runs on CUDA devices"),
    (["device=cuda"], "CUDA is not available"),
    (["distributed.backend=mpi"], "distributed.backend must be one of auto, gloo, nccl"),
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA line is about a machine without GPUs")
def test_a_bad_launch_is_one_line_on_rank_0_only(overrides, words, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = ["search", "--preset", "quick", "--no-progress", *[a for o in overrides for a in ("--set", o)]]
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert main(args) == 2
        err = capsys.readouterr().err
        if rank == 0:
            assert words in err and len(err.strip().splitlines()) == 1, err
        else:
            assert err == ""
    assert not torch.distributed.is_initialized()
    assert not (tmp_path / "runs").exists()


# --- the Hessian monitor under torchrun ---------------------------------------------------------------

@needs_gloo
@pytest.mark.parametrize("name", list(ddp_worker.HESSIAN_SEARCHES))
def test_the_hessian_monitor_runs_on_every_rank_and_both_log_the_same_eigenvalue(ddp_hessian, name):
    """Its forward passes join SyncBatchNorm's / global σ's collectives on every rank (no hang), and
    the products summed over ranks give both the same eigenvalue, which rank 0 logs."""
    r0, r1 = load(ddp_hessian, f"hessian_{name}", 0), load(ddp_hessian, f"hessian_{name}", 1)
    assert [e for e, _, _ in r0] == [1, 2] and all(math.isfinite(v) for _, v, _ in r0)
    assert r0 == r1  # bit for bit: eigenvalues and Lanczos steps
    logged = [json.loads(line) for line in (ddp_hessian / f"hessian_{name}" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["epoch"], m["hessian_eig"], m["hessian_products"]) for m in logged] == r0
    state = torch.load(ddp_hessian / f"hessian_{name}" / "checkpoint.pt", weights_only=False)
    assert state["callbacks"]["HessianMonitor"]["vector"] is not None  # the warm start, as ever


@needs_gloo
def test_the_hessian_under_torchrun_is_the_one_process_hessian_of_the_global_batch(ddp_hessian, tmp_path):
    """SyncBatchNorm, no noise: the loss over both ranks is the global batch's, so the measured
    eigenvalue equals one process's at 16 images (to float rounding)."""
    ddp_worker.scenario_hessian_measure(tmp_path)
    single = torch.load(tmp_path / "hessian_measure.rank0.pt", weights_only=False)
    ranked = [load(ddp_hessian, "hessian_measure", r) for r in (0, 1)]
    assert ranked[0]["eig"] == ranked[1]["eig"] and torch.equal(ranked[0]["vector"], ranked[1]["vector"])
    assert single["eig"] > 0 and ranked[0]["eig"] == pytest.approx(single["eig"], rel=1e-4)

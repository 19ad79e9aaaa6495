"""The run lifecycle (noisydarts.runtime.lifecycle): create-or-resume, the lock, config.yaml with
provenance, metrics cut back to the checkpoint, cleanup of a run that failed before it began;
and that search and train both live by it (checked by what they do, not by mocking)."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from noisydarts.errors import UserError
from noisydarts.runtime import runs
from noisydarts.runtime.lifecycle import RunLifecycle, truncate_metrics
from noisydarts.runtime.runs import LOCK, RunLock

from conftest import TINY_SEARCH, TINY_TRAIN

SRC = str(Path(__file__).parents[1] / "src")
CFG = {"epochs": 2, "seed": 3, "device": "cpu"}  # any resolved config: the lifecycle writes it and reads it back


def _resolve(raw: dict) -> dict:
    return dict(raw)


def _lock_holder(run_dir: Path) -> dict:
    return json.loads((run_dir / LOCK).read_text())


def _checkpointed(run_dir: Path, epoch: int, metric_epochs) -> None:
    """A run directory as a command leaves it: config.yaml, checkpoint.pt, metrics.jsonl."""
    runs.atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(CFG))
    runs.atomic_torch_save({"epoch": epoch, "model": {}, "rng": {}}, run_dir / "checkpoint.pt")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "loss": 1.0 / e}) + "\n"
                                                   for e in metric_epochs))


# --- create ------------------------------------------------------------------------------------

def test_a_new_run_is_created_locked_with_its_config_and_provenance(tmp_path):
    out = tmp_path / "run"
    with RunLifecycle.create("search", CFG, out=out, preset="quick", files={"genotype.json": "{}\n"}) as run:
        assert run.run_dir == out and run.created and run.main and run.resumed_at is None
        holder = _lock_holder(out)  # held for the body, by this process
        assert holder["pid"] == os.getpid() and holder["command"] == "search"
        saved = yaml.safe_load((out / "config.yaml").read_text())
        assert saved.pop("provenance") == run.provenance and run.preset == "quick"
        assert saved == CFG and run.provenance["command"] and "torch" in run.provenance
        assert (out / "genotype.json").read_text() == "{}\n"
        with pytest.raises(UserError, match=f"in use by search process {os.getpid()} on {socket.gethostname()}"):
            RunLock(out, "search").acquire()
        run.begin()
        assert run.start_line("cpu", "fp32") == f"search: starting: device cpu, precision fp32, run directory {out}, preset quick"
    assert not (out / LOCK).exists()  # released at the end
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "genotype.json"]


def test_a_second_process_is_refused_and_told_who_holds_the_run(tmp_path):
    """Another process (a real one) holds the run: a new run into it, and a resume of it, are
    refused in one line naming the holder, and change nothing."""
    out = tmp_path / "run"
    out.mkdir()
    _checkpointed(out, 1, [1])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from noisydarts.runtime.lifecycle import RunLifecycle\n"
        "with RunLifecycle.resume('search', sys.argv[1], dict, keys={'epoch': int}) as run:\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"), str(out)],
        env=dict(os.environ, PYTHONPATH=SRC), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        holder = f"in use by search process {child.pid} on {socket.gethostname()}"
        with pytest.raises(UserError, match=holder):
            with RunLifecycle.resume("search", out, _resolve, keys={"epoch": int}):
                pytest.fail("the body runs only with the lock")
    finally:
        child.kill()
        child.wait()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK} == before


def test_a_new_run_into_a_locked_directory_is_refused_and_writes_nothing(tmp_path):
    lock = RunLock(tmp_path, "train").acquire()  # an empty directory another writer has just taken
    try:
        with pytest.raises(UserError, match=f"in use by train process {os.getpid()}"):
            with RunLifecycle.create("train", CFG, out=tmp_path, files={"genotype.json": "{}\n"}):
                pytest.fail("the body runs only with the lock")
        assert [p.name for p in tmp_path.iterdir()] == [LOCK]  # the refused process wrote (and removed) nothing
    finally:
        lock.release()
    assert tmp_path.is_dir()


@pytest.mark.parametrize("error", [UserError("no such dataset"), KeyboardInterrupt()])
def test_a_failure_before_the_run_began_leaves_nothing(tmp_path, error):
    made = tmp_path / "made-here"
    with pytest.raises(type(error)):
        with RunLifecycle.create("train", CFG, out=made, files={"genotype.json": "{}\n"}):
            raise error  # e.g. the data cannot be opened, or Ctrl-C while the network is built
    assert not made.exists()
    given = tmp_path / "given"
    given.mkdir()  # an empty directory the user made: kept, emptied of what the run wrote
    with pytest.raises(type(error)):
        with RunLifecycle.create("train", CFG, out=given, files={"genotype.json": "{}\n"}):
            raise error
    assert given.is_dir() and not any(given.iterdir())
    default_root = tmp_path / "runs"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(type(error)):
            with RunLifecycle.create("search", CFG, label="quick") as run:
                assert run.run_dir.parent == Path("runs") and run.run_dir.name.endswith("-quick")
                raise error
    finally:
        os.chdir(cwd)
    assert not any(default_root.iterdir())


def test_a_failure_after_the_run_began_keeps_it(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunLifecycle.create("search", CFG, out=out) as run:
            run.begin()
            raise RuntimeError("diverged in epoch 1")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]


def test_a_directory_with_files_is_not_a_new_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists and is not empty"):
        with RunLifecycle.create("search", CFG, out=tmp_path):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# --- resume ------------------------------------------------------------------------------------

def test_resume_reads_the_run_and_cuts_metrics_back_to_the_checkpoint(tmp_path):
    """An epoch logged but not checkpointed (kill -9 between the two writes) is dropped; the
    checkpoint is handed to the model before anything is cut."""
    _checkpointed(tmp_path, 2, [1, 2, 3])
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 4, "lo')  # a line cut by the crash
    loaded = []
    with RunLifecycle.resume("train", tmp_path, _resolve, keys={"epoch": int, "model": dict}) as run:
        assert _lock_holder(tmp_path)["command"] == "train"
        assert run.cfg == CFG and run.resumed_at == 2 and run.state["epoch"] == 2
        assert "provenance" not in run.cfg
        assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()[:3]] \
            == [1, 2, 3]  # nothing is cut before the checkpoint is restored
        run.restore(loaded.append)
        assert loaded == [run.state]
        assert [r["epoch"] for r in runs.read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2]
        assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")  # the cut line is gone too
        assert run.start_line("cpu", "fp32").startswith("train: resuming after epoch 2: device cpu")
    assert not (tmp_path / LOCK).exists()


def test_a_checkpoint_that_does_not_fit_is_one_line_and_changes_nothing(tmp_path):
    _checkpointed(tmp_path, 1, [1, 2])
    before = (tmp_path / "metrics.jsonl").read_bytes()

    def load_state_dict(state):
        raise RuntimeError("size mismatch for cells.0.weight\nmore detail")

    with pytest.raises(UserError, match="checkpoint.pt does not fit config.yaml and genotype.json "
                                        r"\(size mismatch for cells.0.weight\)"):
        with RunLifecycle.resume("train", tmp_path, _resolve) as run:
            run.restore(load_state_dict, "config.yaml and genotype.json")
    assert (tmp_path / "metrics.jsonl").read_bytes() == before and (tmp_path / "config.yaml").exists()


def test_resume_says_what_is_missing_and_never_removes_a_run(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        with RunLifecycle.resume("search", tmp_path / "nope", _resolve):
            pass
    runs.atomic_write_text(tmp_path / "config.yaml", yaml.safe_dump(CFG))
    assert not RunLifecycle.resumable(tmp_path)
    with pytest.raises(UserError, match="no checkpoint.pt there .it stopped before its first checkpoint: start it again with the same command"):
        with RunLifecycle.resume("search", tmp_path, _resolve):
            pass
    _checkpointed(tmp_path, 1, [1])
    assert RunLifecycle.resumable(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with RunLifecycle.resume("search", tmp_path, _resolve):
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.jsonl"]


def test_resuming_with_another_number_of_processes_warns(tmp_path):
    _checkpointed(tmp_path, 1, [1])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    runs.atomic_torch_save({**state, "world_size": 4}, tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match=r"ran with 4 process\(es\) and continues with 1: the data order"):
        with RunLifecycle.resume("search", tmp_path, _resolve):
            pass


def test_truncate_metrics_keeps_the_epochs_done(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3)))
    truncate_metrics(path, 1)
    assert runs.read_jsonl(path) == [{"epoch": 1}]
    truncate_metrics(tmp_path / "none.jsonl", 0)  # a run that logged nothing yet
    assert (tmp_path / "none.jsonl").read_text() == ""


# --- search and train both live by it ------------------------------------------------------------

@pytest.mark.parametrize("command", ["search", "train"])
def test_search_and_train_follow_the_lifecycle(command, tmp_path, monkeypatch):
    """The same lifecycle whichever command: config.yaml with provenance, held lock, the refusal
    naming the holder, metrics cut back on resume, a failed start leaving nothing."""
    from noisydarts.search import search
    from noisydarts.train import Trainer, train

    def start(out, **kw):
        if command == "search":
            return search(copy.deepcopy(TINY_SEARCH) | {"epochs": 2}, out=out, progress=False, **kw)
        return train("noisydarts_a", copy.deepcopy(TINY_TRAIN) | {"epochs": 2}, out=out, progress=False, **kw)

    def resume(out):
        return (search(resume=out, progress=False) if command == "search"
                else train(None, resume=out, progress=False))

    out = tmp_path / "run"
    start(out, stop_after=1)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["provenance"]["command"] and saved["epochs"] == 2 and not (out / LOCK).exists()
    # the lock: a second writer is refused, naming the holder, and changes nothing
    with runs.active_run(out, command):
        with pytest.raises(UserError, match=f"in use by {command} process {os.getpid()}"):
            resume(out)
    # an epoch logged past the checkpoint (kill -9 between the writes) is dropped on resume
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 2, "stale": True}) + "\n")
    result = resume(out)
    assert [r["epoch"] for r in result.metrics] == [1, 2] and not any("stale" in r for r in result.metrics)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
    # a run failing before it began (here: its data) leaves nothing behind
    broken = tmp_path / "broken"
    if command == "search":
        with pytest.raises(UserError, match="cifar10-nope"):
            search(copy.deepcopy(TINY_SEARCH) | {"data": {"name": "cifar10-nope"}}, out=broken, progress=False)
    else:
        def no_data(self, *args, **kwargs):
            raise UserError("dataset cifar10-nope not found")

        monkeypatch.setattr(Trainer, "__init__", no_data)
        with pytest.raises(UserError, match="cifar10-nope"):
            start(broken)
    assert not broken.exists()

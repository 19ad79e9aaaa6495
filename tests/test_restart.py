"""Runs that stopped before their first checkpoint start again with the same ``--out``; a resume
of a finished run says it is finished (issue 24)."""

import copy
import json
import os
import shutil

import pytest
import yaml

from conftest import TINY_SEARCH, TINY_TRAIN
from noisydarts.cli import main
from noisydarts.errors import UserError
from noisydarts.runtime import runs
from noisydarts.runtime.runs import LOCK, RunLock
from noisydarts.search import search
from noisydarts.train import resolve_config, train

ONE_EPOCH_SEARCH = {**copy.deepcopy(TINY_SEARCH), "epochs": 1, "data": {"name": "cifar10-mini", "limit": 32,
                                                                        "resolution": 16}}


class _KilledInEpochOne:
    """Stops the search during its first epoch, before anything of it is written (as kill -9 would)."""

    def on_record(self, searcher, record):
        raise KeyboardInterrupt


def _killed_search(out):
    """The state a search killed before its first checkpoint leaves: config.yaml, and the epoch's
    metrics line when the kill came between that line and the checkpoint, and a cut temporary file."""
    with pytest.raises(KeyboardInterrupt):
        search(copy.deepcopy(ONE_EPOCH_SEARCH), out=out, progress=False, callbacks=[_KilledInEpochOne()])
    (out / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 9.0}) + "\n")
    (out / ".checkpoint.pt.x1y2.tmp").write_bytes(b"cut")
    assert sorted(p.name for p in out.iterdir()) == [".checkpoint.pt.x1y2.tmp", "config.yaml", "metrics.jsonl"]


def test_a_search_killed_before_its_first_checkpoint_starts_again_with_the_same_out(tmp_path, capsys):
    out = tmp_path / "run"
    _killed_search(out)
    capsys.readouterr()
    assert main(["search", "--resume", str(out)]) == 2  # nothing to resume: says how to start it again
    assert capsys.readouterr().err.strip() == (
        f"noisydarts: error: --resume {out}: no checkpoint.pt there (it stopped before its first checkpoint: start "
        f"it again with the same command (--out {out})); give the directory of a search run")
    result = search(copy.deepcopy(ONE_EPOCH_SEARCH), out=out, progress=False)
    err = capsys.readouterr().err
    assert f"{out} held a run that stopped before its first checkpoint; starting it again" in err
    assert [m["epoch"] for m in result.metrics] == [1] and result.metrics[0]["train_loss"] != 9.0  # the old line went
    assert sorted(p.name for p in out.iterdir() if p.name != "data.json") == \
        ["checkpoint.pt", "config.yaml", "genotype.json", "metrics.jsonl"]


def test_a_training_run_killed_before_its_first_checkpoint_starts_again(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("config.yaml", "genotype.json", "metrics.jsonl", "data.json"):
        (out / name).write_text("{}\n")
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.out").write_bytes(b"0")
    result = train("noisydarts_a", resolve_config(copy.deepcopy(TINY_TRAIN)), out=out, progress=False)
    assert "held a run that stopped before its first checkpoint; starting it again" in capsys.readouterr().err
    assert [m["epoch"] for m in result.metrics] == [1] and (out / "weights.pt").is_file()
    assert not (out / "tensorboard").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["weights"]["lr"] == 0.01


@pytest.mark.parametrize("extra", ["checkpoint.pt", "notes.txt", "plots"])
def test_anything_else_in_the_directory_is_still_refused(tmp_path, extra):
    (tmp_path / "config.yaml").write_text("epochs: 1\n")
    (tmp_path / extra).mkdir() if extra == "plots" else (tmp_path / extra).write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UserError, match="already exists and is not empty"):
        search(copy.deepcopy(ONE_EPOCH_SEARCH), out=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_run_still_in_its_first_epoch_is_never_cleared(tmp_path):
    """Its process holds the lock: the same --out is refused, naming it, and nothing is removed."""
    (tmp_path / "config.yaml").write_text("epochs: 1\n")
    lock = RunLock(tmp_path, "search").acquire()
    try:
        with pytest.raises(UserError, match=f"in use by search process {os.getpid()}"):
            search(copy.deepcopy(ONE_EPOCH_SEARCH), out=tmp_path, progress=False)
        assert (tmp_path / "config.yaml").read_text() == "epochs: 1\n"
    finally:
        lock.release()
    assert runs.stopped_before_checkpoint(tmp_path, ("config.yaml",))
    assert not runs.stopped_before_checkpoint(tmp_path, ())  # a command that names no files restarts nothing
    (tmp_path / "config.yaml").unlink()
    (tmp_path / LOCK).write_text("")
    assert not runs.stopped_before_checkpoint(tmp_path, ("config.yaml",))  # a lone lock: an empty directory


@pytest.mark.parametrize("command", ["search", "train"])
def test_resume_of_a_finished_run_says_so_and_gives_its_result(command, search_run, train_run, tmp_path, capsys):
    run = shutil.copytree(search_run if command == "search" else train_run, tmp_path / "run")
    epochs = 2 if command == "search" else 1
    metrics = (run / "metrics.jsonl").read_text()
    assert main([command, "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{run} is finished ({epochs} of {epochs} epochs): nothing to resume; its result:"
    assert out[1].startswith("genotype:" if command == "search" else "test accuracy:")
    assert f"run directory: {run}" in out
    assert (run / "metrics.jsonl").read_text() == metrics  # nothing ran


def test_resume_of_an_unfinished_run_does_not_say_finished(tmp_path, capsys):
    out = tmp_path / "run"
    search({**copy.deepcopy(ONE_EPOCH_SEARCH), "epochs": 2}, out=out, progress=False, stop_after=1)
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--no-progress"]) == 0
    assert "is finished" not in capsys.readouterr().out
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]

"""One writer per run (issue 10, class 3): a run directory is locked while a process writes it; the
refusal names the holder; a lock left by a killed process never blocks the next one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from noisydarts.cli import main
from noisydarts.errors import UserError
from noisydarts.runtime.runs import LOCK, RunLock, active_run

SRC = str(Path(__file__).parents[1] / "src")


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_second_writer_is_refused_and_told_who_holds_the_run(command, search_run, train_run, tmp_path, capsys):
    run = _copy(search_run if command == "search" else train_run, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with active_run(run, command):
        code = main([command, "--resume", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"process {os.getpid()} on {socket.gethostname()}" in err and "in use" in err
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK} == before
    assert not (run / LOCK).exists()  # released on exit


def test_a_new_run_into_a_locked_directory_is_refused(tmp_path):
    from noisydarts.search import search

    out = tmp_path / "empty"
    out.mkdir()
    lock = RunLock(out, "search").acquire()
    try:
        with pytest.raises(UserError, match="in use by search process"):
            search({"epochs": 1}, out=out, progress=False)
    finally:
        lock.release()
    assert not (out / "config.yaml").exists()  # the refused process wrote nothing


def test_the_lock_of_a_killed_process_is_recovered(tmp_path):
    """kill -9 leaves the lock file behind; the kernel has released the lock with the process."""
    run = tmp_path / "run"
    run.mkdir()
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from noisydarts.runs import RunLock; RunLock(sys.argv[1], 'search').acquire(); "
        "print('locked', flush=True); time.sleep(60)"), str(run)],
        env=dict(os.environ, PYTHONPATH=SRC), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"process {child.pid} on {socket.gethostname()}"):
            RunLock(run, "search").acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (run / LOCK).exists()  # left behind by kill -9
    lock = RunLock(run, "search").acquire()  # and yet free
    assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
    lock.release()


@pytest.fixture
def no_flock(monkeypatch):
    """The O_EXCL fallback (systems without fcntl)."""
    monkeypatch.setitem(sys.modules, "fcntl", None)


def _write_lock(run: Path, **holder):
    (run / LOCK).write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "command": "search",
                                        "started": "2026-01-01 00:00:00", **holder}))


def test_fallback_recovers_a_stale_lock_of_a_dead_pid(no_flock, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_lock(tmp_path, pid=int(proc.stdout))  # that process has exited
    lock = RunLock(tmp_path, "search").acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK).exists()


# The live holder is this test process, named at run time: parameters must be the same in every
# pytest-xdist worker, so "ME" stands for its pid.
@pytest.mark.parametrize("holder, words", [
    ({"pid": "ME"}, "search process ME on HOST"),  # alive here
    ({"pid": 12345, "host": "elsewhere"}, "process 12345 on elsewhere"),  # another host: cannot tell
    ({}, "since 2026-01-01 00:00:00"),
], ids=["alive-here", "other-host", "no-pid"])
def test_fallback_refuses_a_live_or_unknown_holder(no_flock, tmp_path, holder, words):
    holder = {k: os.getpid() if v == "ME" else v for k, v in holder.items()}
    words = words.replace("ME", str(os.getpid())).replace("HOST", socket.gethostname())
    _write_lock(tmp_path, **holder)
    with pytest.raises(UserError, match="in use by") as info:
        RunLock(tmp_path, "search").acquire()
    assert words in str(info.value) and str(tmp_path / LOCK) in str(info.value)


def test_a_pid_reused_by_another_process_is_stale(no_flock, tmp_path):
    _write_lock(tmp_path, pid=os.getpid(), pid_start="1")  # our pid, but a different start time
    RunLock(tmp_path, "search").acquire().release()


def test_an_unwritable_run_directory_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserError, match="must be writable"):
            RunLock(tmp_path, "search").acquire()
    finally:
        tmp_path.chmod(0o700)


def test_concurrent_resumes_of_one_run(search_run, tmp_path, capsys):
    """Two processes resume the same run: the second is refused in one line while the first works,
    and the metrics are the first one's alone, not interleaved."""
    import torch
    import yaml

    run = _copy(search_run, tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["epochs"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    working, go_on = tmp_path / "working", tmp_path / "go_on"
    first = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys, time\n"
        "from noisydarts.search import search\n"
        "class Pause:\n"
        "    def on_epoch(self, record, run_dir):\n"
        "        if record['epoch'] == 3:\n"
        "            pathlib.Path(sys.argv[2]).touch()\n"
        "            while not pathlib.Path(sys.argv[3]).exists():\n"
        "                time.sleep(0.02)\n"
        "search(resume=sys.argv[1], progress=False, callbacks=[Pause()])\n"), str(run), str(working), str(go_on)],
        env=dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1"), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not working.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert working.exists(), first.stderr.read() if first.poll() is not None else "timeout"
        code = main(["search", "--resume", str(run), "--no-progress"])  # meanwhile, a second process
        err = capsys.readouterr().err
        assert code == 2 and f"search process {first.pid} on {socket.gethostname()}" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        go_on.touch()
        _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 4
    assert not (run / LOCK).exists()


def test_a_file_system_without_flock_falls_back_to_o_excl(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = RunLock(tmp_path, "search").acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    with pytest.raises(UserError, match=f"process {os.getpid()}"):
        RunLock(tmp_path, "search").acquire()
    lock.release()
    assert not (tmp_path / LOCK).exists()

"""Output locations (issue 10, class 6): a location that cannot be written is one line, a missing
directory for an export is created, and every file a command writes honours the umask."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from noisydarts.cli import main

TINY_SEARCH_CLI = ["--preset", "quick", "--set", "epochs=1", "--set", "data.limit=48", "--set", "data.resolution=16",
                   "--set", "space.channels=4", "--set", "space.layers=3", "--set", "space.nodes=2",
                   "--set", "batch_size=16", "--no-progress"]
TINY_TRAIN_CLI = ["noisydarts_a", "--set", "epochs=1", "--set", "selection=test", "--set", "network.channels=8", "--set", "network.layers=3",
                  "--set", "data.name=cifar10-mini", "--set", "data.limit=32", "--set", "batch_size=16", "--no-progress"]


def _one_line(capsys, code):
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize("out", ["a_file/run", "a_file/deeper/run", "a_file", "x" * 300 + "/run"])
@pytest.mark.parametrize("command", ["search", "train"])
def test_unusable_out_is_one_line(command, out, a_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = TINY_SEARCH_CLI if command == "search" else TINY_TRAIN_CLI
    err = _one_line(capsys, main([command, *args, "--out", out]))
    assert "--out" in err
    assert a_file.read_text() == "not a directory"


def test_default_run_root_that_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("a file where runs/ would go")
    err = _one_line(capsys, main(["search", *TINY_SEARCH_CLI]))
    assert "runs" in err and "--out" in err


def test_export_creates_missing_directories_and_refuses_files(train_run, a_file, tmp_path, capsys):
    out = tmp_path / "new" / "dirs" / "net.ts"
    assert main(["export", str(train_run), "--out", str(out)]) == 0 and out.is_file()
    into = tmp_path / "existing"
    into.mkdir()
    assert main(["export", str(train_run), "--out", str(into)]) == 0 and (into / "model.ts").is_file()
    assert "already exists" in _one_line(capsys, main(["export", str(train_run), "--out", str(into)]))
    assert "cannot create" in _one_line(capsys, main(["export", str(train_run), "--out", str(a_file / "net.ts")]))
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.ts"]  # no temporary left behind


def test_report_and_plot_into_unusable_places(search_run, a_file, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    _one_line(capsys, main(["report", str(run), "--out", str(a_file)]))
    _one_line(capsys, main(["report", str(run), "--out", str(a_file / "sub")]))
    shutil.rmtree(run / "plots", ignore_errors=True)
    (run / "plots").write_text("a file where plots/ would go")
    _one_line(capsys, main(["plot", str(run)]))
    _one_line(capsys, main(["report", str(run), "--out", str(tmp_path / "report")]))


def _modes(root: Path):
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_every_written_file_honours_the_umask(umask, tmp_path, capsys):
    old = os.umask(umask)
    try:
        search_dir, train_dir, report_dir = tmp_path / "s", tmp_path / "t", tmp_path / "r"
        assert main(["search", *TINY_SEARCH_CLI, "--out", str(search_dir)]) == 0  # with plots and report
        assert main(["train", *TINY_TRAIN_CLI, "--out", str(train_dir)]) == 0
        assert main(["export", str(train_dir)]) == 0
        assert main(["report", str(search_dir), "--out", str(report_dir)]) == 0
    finally:
        os.umask(old)
    modes = {**_modes(tmp_path)}
    files = {p: m for p, m in modes.items() if (tmp_path / p).is_file()}
    dirs = {p: m for p, m in modes.items() if (tmp_path / p).is_dir()}
    for name in ("s/checkpoint.pt", "s/config.yaml", "s/metrics.jsonl", "s/genotype.json", "s/report.html",
                 "t/weights.pt", "t/best.pt", "t/model.ts", "r/report.md"):
        assert name in files
    assert {p: oct(m) for p, m in files.items() if m != 0o666 & ~umask} == {}
    assert {p: oct(m) for p, m in dirs.items() if m != 0o777 & ~umask} == {}
    assert not any(p.endswith(".lock") or p.endswith(".tmp") for p in modes)

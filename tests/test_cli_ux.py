"""What a new user sees (issue 10, classes 8-10 and 13): instant help, the start-of-run line, the
end of an NB201 search, one name for mult-adds, quiet logs off a terminal, Ctrl-C naming the run,
the zoo's cache, ONNX export, provenance in config.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from noisydarts import cli
from noisydarts.cli import main
from noisydarts.search import resolve_config

from test_guard import TINY_CLI, TINY_NB201

SRC = str(Path(__file__).parents[1] / "src")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["search", "--help"], ["train", "--help"], ["presets"],
                                  ["presets", "quick"], ["nb201", "lookup", "--json",
                                  "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"]])
def test_help_presets_and_lookup_never_import_torch(args):
    code = ("import sys\nfrom noisydarts.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nassert 'matplotlib' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=SRC))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_the_package_imports_lazily():
    r = subprocess.run([sys.executable, "-c", "import sys, noisydarts; assert 'torch' not in sys.modules; "
                        "noisydarts.UserError; assert 'torch' not in sys.modules; print(noisydarts.search.__module__, noisydarts.train.__module__)"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC))
    assert r.returncode == 0 and r.stdout.strip() == "noisydarts.search.api noisydarts.train.api", r.stderr
    import importlib

    import noisydarts

    importlib.import_module("noisydarts.search")  # the subpackages: the package attributes stay the functions
    importlib.import_module("noisydarts.train.loop")
    importlib.import_module("noisydarts.train.api")
    assert callable(noisydarts.search) and noisydarts.search.__name__ == "search"
    assert callable(noisydarts.train) and noisydarts.train.__name__ == "train"
    assert set(noisydarts.__all__) <= set(dir(noisydarts))


def test_start_line_and_resume_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in TINY_CLI if a != "--no-progress"]
    assert main(["search", "--out", str(out), *args, "--set", "epochs=1", "--no-plots"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"search: starting: device cpu, precision fp32, run directory {out}, preset quick"
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["epochs"] = 2
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["search", "--resume", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("search: resuming after epoch 1: device cpu")
    train_out = tmp_path / "train"
    assert main(["train", "noisydarts_a", "--out", str(train_out), "--set", "epochs=1", "--set", "network.channels=8",
                 "--set", "network.layers=3", "--set", "data.name=cifar10-mini", "--set", "data.limit=16"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        f"train: starting: device cpu, precision fp32, run directory {train_out}"


def test_no_progress_bar_off_a_terminal(tmp_path, capsys, monkeypatch):
    from noisydarts.runtime.progress import progress_bar as _progress

    assert _progress(10, "x", True) is None  # pytest's stderr is not a terminal

    class Terminal:
        def isatty(self):
            return True

        def write(self, s):
            pass

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = _progress(10, "x", True)
    assert bar is not None and _progress(10, "x", False) is None
    bar.close()


def test_logs_off_a_terminal_are_one_line_per_epoch(tmp_path):
    r = subprocess.run([sys.executable, "-m", "noisydarts", "search", "--out", str(tmp_path / "run"),
                        *[a for a in TINY_CLI if a != "--no-progress"], "--no-plots", "--set", "epochs=1"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr + r.stdout and "it/s" not in r.stderr
    assert sum(line.startswith("epoch ") for line in r.stdout.splitlines()) == 1


def test_end_of_an_nb201_search(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--out", str(out), *TINY_NB201, "--no-plots"]) == 0
    printed = capsys.readouterr().out
    arch = json.loads((out / "genotype.json").read_text())["genotype"]
    assert printed.count(arch) == 1  # the cell once
    assert "trained by the benchmark (200 epochs; not measured by this search)" in printed
    assert "the best cell 94.37 %" in printed and "the all-skip_connect cell (collapse) 54.30 %" in printed
    assert f"run directory: {out}" in printed


def test_mult_adds_is_one_name(capsys):
    assert main(["nb201", "lookup", "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                 "nor_conv_1x1~2|"]) == 0
    text = capsys.readouterr().out
    assert "mult-adds:       153.27 M" in text
    parser = cli.build_parser()
    helps = [parser.format_help()] + [p.format_help() for a in parser._subparsers._actions
                                      if hasattr(a, "choices") and a.choices for p in a.choices.values()]
    for text in helps + [text]:
        assert "FLOPs" not in text and "MAdds" not in text
    from noisydarts.benchmark import nb201

    row = nb201.by_index(0).to_dict()
    assert "multadds_m" in row and "flops_m" not in row and nb201.by_index(0).flops_m == row["multadds_m"]


def test_zoo_output_and_its_cache(tmp_path, monkeypatch, capsys):
    from noisydarts.models import zoo

    monkeypatch.setenv("NOISYDARTS_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_info(genotype, dataset="cifar10"):
        calls.append(genotype)
        return {"params_m": 3.0, "multadds_m": 500.0}

    monkeypatch.setattr(zoo, "size", fake_info)
    first = zoo.table()
    assert len(calls) == len(zoo.ZOO) and len(list((tmp_path / "cache").iterdir())) == 1
    assert zoo.table() == first and len(calls) == len(zoo.ZOO)  # the second time from the cache
    next((tmp_path / "cache").iterdir()).write_text("{not json")
    assert zoo.table() == first and len(calls) == 2 * len(zoo.ZOO)  # a damaged cache is recomputed
    monkeypatch.setenv("NOISYDARTS_CACHE", str(tmp_path / "cache" / next((tmp_path / "cache").iterdir()).name / "x"))
    assert zoo.table() == first  # an unusable cache location only costs time
    monkeypatch.setenv("NOISYDARTS_CACHE", str(tmp_path / "cache"))
    assert main(["zoo"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "mult-adds (pub)" in header and "MAdds" not in header


@pytest.mark.parametrize("command, at_epoch, resumable", [("search", 1, True), ("search", 0, False),
                                                           ("train", 1, True), ("train", 0, False)])
def test_ctrl_c_names_the_real_run(command, at_epoch, resumable, tmp_path, capsys, monkeypatch):
    from noisydarts.search import Searcher
    from noisydarts.train import Trainer

    cls = Searcher if command == "search" else Trainer
    original = cls.train_epoch

    def interrupted(self, epoch):
        if epoch == at_epoch:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(cls, "train_epoch", interrupted)
    out = tmp_path / "my run"
    args = TINY_CLI if command == "search" else ["noisydarts_a", "--set", "epochs=2", "--set", "network.channels=8",
                                                 "--set", "network.layers=3", "--set", "data.name=cifar10-mini",
                                                 "--set", "data.limit=16", "--no-progress"]
    assert main([command, *args, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    if resumable:
        assert err == f"interrupted: continue with `noisydarts {command} --resume '{out}'`"
    else:
        assert err == (f"interrupted before the first epoch ended: nothing to resume in {out} (start it again with "
                       f"the same command (--out '{out}'))")
    assert not (out / ".lock").exists()


def test_provenance_is_recorded_and_ignored_when_read_back(search_run, train_run, tmp_path):
    import noisydarts

    for run in (search_run, train_run):
        prov = yaml.safe_load((run / "config.yaml").read_text())["provenance"]
        assert prov["noisydarts"] == noisydarts.__version__ and prov["torch"] == str(torch.__version__)
        assert prov["command"] and prov["python"] and prov["started"]
        head = subprocess.run(["git", "-C", SRC, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if head:  # tests run from a checkout: a commit of it (HEAD, or an ancestor if one was made since)
            commit = prov["git"].split("+")[0]
            assert len(commit) == 40 and subprocess.run(
                ["git", "-C", SRC, "merge-base", "--is-ancestor", commit, head]).returncode == 0
    # A run's config.yaml as the --config of a new run: provenance is not a setting.
    cfg = resolve_config(config_file=search_run / "config.yaml")
    assert "provenance" not in cfg
    from noisydarts.train import resolve_config as train_resolve

    assert "provenance" not in train_resolve(train_run / "config.yaml")


def test_onnx_needs_its_packages(train_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    code = main(["export", str(train_run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "onnxscript" in err and "pip install 'noisydarts[onnx]'" in err
    assert not (tmp_path / "m.onnx").exists()

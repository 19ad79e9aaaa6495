"""Safe loading and resume: every file a command loads is read without running code, and every
way it can be wrong is one line naming the file (issue 10, classes 1 and 5)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from noisydarts.cli import main
from noisydarts.errors import UserError
from noisydarts.runtime.rng import rng_state, set_rng_state


class _Evil:
    """Pickles to a call of os.system: loading it with weights_only=False would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_error(capsys, code, expected_code=2):
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _commands(run_dir: Path, kind: str, name: str = "weights.pt"):
    """Every command that loads ``kind`` ("search" checkpoint, "train" checkpoint, weights)."""
    if kind == "search":
        return [["search", "--resume", str(run_dir)]]
    if kind == "train":
        return [["train", "--resume", str(run_dir)]]
    return [["evaluate", str(run_dir)], ["evaluate", str(run_dir / name)],
            ["export", str(run_dir), "--out", str(run_dir / "x.ts")]]


@pytest.mark.parametrize("kind, name", [("search", "checkpoint.pt"), ("train", "checkpoint.pt"),
                                        ("weights", "weights.pt"), ("weights", "best.pt")])
def test_a_crafted_file_never_runs_code(kind, name, search_run, train_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(search_run if kind == "search" else train_run, run)
    marker = tmp_path / "pwned"
    payload = torch.load(run / name, weights_only=True)
    payload["model"] = _Evil(marker)
    torch.save(payload, run / name)
    if name == "best.pt":
        (run / "weights.pt").unlink()  # a run directory then loads best.pt
    for args in _commands(run, kind, name):
        err = _one_line_error(capsys, main(args))
        assert name in err and "could run code" in err and "not loaded" in err
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [
    (b"", "truncated or not a PyTorch file"),
    (b"garbage", "truncated or not a PyTorch file"),
    (pickle.dumps({"epoch": 1}), "not a valid"),
    ("tensor", "it holds a Tensor"),
    ("list", "it holds a list"),
    ("missing", "no 'model' entry"),
    ("wrong type", "its 'model' entry is a str"),
])
@pytest.mark.parametrize("kind", ["search", "train", "weights"])
def test_any_other_file_is_one_line(kind, content, words, search_run, train_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(search_run if kind == "search" else train_run, run)
    name = "weights.pt" if kind == "weights" else "checkpoint.pt"
    good = torch.load(run / name, weights_only=True)
    if isinstance(content, bytes):
        (run / name).write_bytes(content)
    else:
        obj = {"tensor": torch.zeros(3), "list": [1, 2],
               "missing": {k: v for k, v in good.items() if k != "model"},
               "wrong type": {**good, "model": "weights"}}[content]
        torch.save(obj, run / name)
    before = (run / name).read_bytes()
    for args in _commands(run, kind):
        err = _one_line_error(capsys, main(args))
        assert name in err and words in err, err
    assert (run / name).read_bytes() == before  # the file is never touched


def test_rng_state_is_plain_and_round_trips(tmp_path):
    import random

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)  # numpy's state as a tensor: accepted
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    set_rng_state(loaded)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


@pytest.mark.parametrize("name", ["checkpoint.pt"])
def test_checkpoints_load_with_weights_only(search_run, train_run, name):
    for run in (search_run, train_run):
        assert isinstance(torch.load(run / name, weights_only=True), dict)
    assert isinstance(torch.load(train_run / "weights.pt", weights_only=True), dict)


# --- resume: the right file is blamed ---------------------------------------------------------------

def _edit_config(run: Path, edit):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    edit(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize("command", ["search", "train"])
@pytest.mark.parametrize("damage, words", [
    (lambda run: (run / "config.yaml").write_text("epochs: [1,\n"), "config.yaml is not valid YAML"),
    (lambda run: (run / "config.yaml").write_bytes(b"\xff\xfe\x00binary"), "config.yaml is not UTF-8"),
    (lambda run: (run / "config.yaml").write_text("- a\n- b\n"), "does not hold a config mapping"),
    (lambda run: _edit_config(run, lambda c: c.update(epochs="many")), "epochs must be int"),
    (lambda run: _edit_config(run, lambda c: c.update(bogus=1)), "unknown config key 'bogus'"),
    (lambda run: (run / "config.yaml").unlink(), "no config.yaml there"),
    (lambda run: (run / "checkpoint.pt").unlink(), "no checkpoint.pt there"),
])
def test_resume_blames_the_right_file(command, damage, words, search_run, train_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(search_run if command == "search" else train_run, run)
    damage(run)
    err = _one_line_error(capsys, main([command, "--resume", str(run)]))
    assert words in err, err
    if "checkpoint" not in words:
        assert "checkpoint.pt is not" not in err  # a bad config is never blamed on the checkpoint


def test_resume_with_a_config_that_no_longer_fits_the_checkpoint(search_run, train_run, tmp_path, capsys):
    for command, source, edit in (("search", search_run, lambda c: c["space"].update(channels=8)),
                                  ("train", train_run, lambda c: c["network"].update(channels=12)),
                                  ("search", search_run, lambda c: c["space"].update(ops=["skip_connect", "avg_pool_3x3"]))):
        run = tmp_path / f"{command}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(source, run)
        _edit_config(run, edit)
        err = _one_line_error(capsys, main([command, "--resume", str(run)]))
        assert "checkpoint.pt does not fit config.yaml" in err and "edited" in err


def test_resume_of_the_other_kind_of_run(search_run, train_run, capsys):
    err = _one_line_error(capsys, main(["train", "--resume", str(search_run)]))
    assert "is a search run" in err and "noisydarts search --resume" in err
    err = _one_line_error(capsys, main(["search", "--resume", str(train_run)]))
    assert "is a train run" in err and "noisydarts train --resume" in err


@pytest.mark.parametrize("command", ["search", "train"])
def test_resume_input_checks_are_the_same_for_search_and_train(command, tmp_path, capsys):
    assert "no such directory" in _one_line_error(capsys, main([command, "--resume", str(tmp_path / "nope")]))
    (tmp_path / "file").write_text("x")
    assert "no such directory" in _one_line_error(capsys, main([command, "--resume", str(tmp_path / "file")]))
    assert "no checkpoint.pt and config.yaml" in _one_line_error(capsys, main([command, "--resume", str(tmp_path)]))
    err = _one_line_error(capsys, main([command, "--resume", str(tmp_path), "--set", "epochs=3"]))
    assert "continues a run with its own" in err


def test_train_resume_genotype_file(train_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    (run / "genotype.json").write_bytes(b"\x00\x01\x02")
    err = _one_line_error(capsys, main(["train", "--resume", str(run)]))
    assert "genotype.json" in err and "NUL bytes" in err
    (run / "genotype.json").unlink()
    err = _one_line_error(capsys, main(["train", "--resume", str(run)]))
    assert "has no genotype.json" in err


def test_weights_of_another_network_or_malformed_payload(train_run, tmp_path):
    from noisydarts.train import load_trained

    good = torch.load(train_run / "weights.pt", weights_only=True)
    for change in ({"network": {"channels": "many", "layers": 3}}, {"genotype": "Genotype(normal=[1+1])"},
                   {"space": "nb201"}, {"family": "imagenet16"}, {"genotype": {"normal": "x"}},
                   {"num_classes": 7}, {"model": {"stem.0.weight": torch.zeros(1)}}):
        torch.save({**good, **change}, tmp_path / "w.pt")
        with pytest.raises(UserError):
            load_trained(tmp_path / "w.pt")

"""A training run's curves, report and TensorBoard scalars; ``plot`` and ``report`` on training runs.

One tiny run (2 epochs, stopped after the first and resumed, with a holdout split that selects
best.pt) serves most tests: its plots and report are checked against its metrics.jsonl, both
as drawn after the interruption and at the end."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import types

import pytest
import yaml

from conftest import TINY_TRAIN
from noisydarts.cli import main
from noisydarts.runtime.runs import read_jsonl
from noisydarts.viz.curves import (TrainRunData, accuracy_figure, load_train_data, loss_figure, lr_figure,
                                   overlay_curves_figure)
from noisydarts.viz.report import _fmt, write_report

CURVES = {"loss.png", "accuracy.png", "lr.png", "cells.png"}


class FakeWriter:
    """torch.utils.tensorboard.SummaryWriter's calls, recorded (the package need not be installed)."""

    calls: list = []

    def __init__(self, log_dir):
        FakeWriter.calls.append(("dir", log_dir))

    def add_scalar(self, tag, value, step):
        FakeWriter.calls.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        FakeWriter.calls.append(("closed",))


class Recorder:
    """A duck-typed callback of the caller's: what the training loop hands it."""

    def __init__(self):
        self.epochs, self.ends = [], []

    def on_epoch(self, record, run_dir):
        self.epochs.append(record["epoch"])

    def on_end(self, result):
        self.ends.append((result.run_dir, (result.run_dir / "report.html").is_file()))


@pytest.fixture(scope="module")
def curves_run(tmp_path_factory):
    """A 2-epoch training run with plots and (fake) TensorBoard on, stopped after epoch 1 and resumed.
    Returns (run_dir, report.md text after the interruption, TensorBoard calls, recorder)."""
    from noisydarts.train import resolve_config, train

    cfg = copy.deepcopy(TINY_TRAIN) | {"epochs": 2, "plots": True, "tensorboard": True, "selection": "holdout"}
    cfg["data"] = {**cfg["data"], "holdout": 8}
    out = tmp_path_factory.mktemp("curves") / "run"
    FakeWriter.calls = []
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
        train("noisydarts_a", resolve_config(cfg), out=out, progress=False, stop_after=1, callbacks=[recorder])
        interrupted = (out / "report.md").read_text()
        train(None, resume=out, progress=False, callbacks=[recorder])
    return out, interrupted, list(FakeWriter.calls), recorder


def _lines(fig) -> dict:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()}


def test_training_run_draws_its_curves_at_the_end_and_after_an_interruption(curves_run):
    run, interrupted, _, recorder = curves_run
    assert CURVES | {p.replace(".png", ".svg") for p in CURVES} <= {p.name for p in (run / "plots").iterdir()}
    assert "interrupted after 1/2 epochs" in interrupted and "| 1 |" in interrupted and "| 2 |" not in interrupted
    assert recorder.epochs == [1, 2] and recorder.ends == [(run, True), (run, True)]  # after the config's callbacks


def test_the_curves_hold_the_metrics(curves_run):
    run = curves_run[0]
    records = read_jsonl(run / "metrics.jsonl")
    data = load_train_data(run)
    assert isinstance(data, TrainRunData) and data.finished and data.epochs == [1, 2]

    def column(key):
        return [1, 2], [r[key] for r in records]

    assert _lines(loss_figure(data)) == {"train": column("train_loss"), "test": column("test_loss")}
    accuracy = _lines(accuracy_figure(data))
    best = max(range(2), key=lambda i: (records[i]["holdout_acc"], -i))  # the first best epoch, as the loop keeps
    assert accuracy["train"] == column("train_acc") and accuracy["test"] == column("test_acc")
    assert accuracy["test top-5"] == column("test_top5") and accuracy["holdout"] == column("holdout_acc")
    star = next(label for label in accuracy if label.startswith("best.pt"))
    assert accuracy[star] == ([best + 1], [records[best]["holdout_acc"]]) and "holdout" in star
    assert _lines(lr_figure(data)) == {"lr": column("lr")}
    assert records[1]["lr"] < records[0]["lr"]  # cosine: the second epoch trains with a smaller lr


def test_top5_is_left_out_where_it_says_nothing(curves_run, tmp_path):
    run = shutil.copytree(curves_run[0], tmp_path / "run")
    records = read_jsonl(run / "metrics.jsonl")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r | {"test_top5": 100.0}) + "\n" for r in records))
    assert "test top-5" not in _lines(accuracy_figure(load_train_data(run)))


def test_the_report_holds_the_metrics_table_and_the_result(curves_run):
    run = curves_run[0]
    records = read_jsonl(run / "metrics.jsonl")
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    assert md.startswith("# noisydarts training report")
    header = "| epoch | train_loss | train_acc | test_loss | test_acc | test_top5 | holdout_acc | lr | epoch_time |"
    assert header in md
    for r in records:
        row = "| " + " | ".join(_fmt(r[k]) for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                                                       "test_top5", "holdout_acc", "lr", "epoch_time")) + " |"
        assert row in md
    best = max(records, key=lambda r: r["holdout_acc"])
    assert f"best.pt: epoch {best['epoch']}: {best['holdout_acc']:.2f} % on the holdout split" in md
    assert f"Final: test accuracy {_fmt(records[-1]['test_acc'])} %" in md
    for png in sorted(CURVES):
        assert f"](plots/{png})" in md
    assert len(re.findall(r'src="data:image/png;base64,', html)) == len(CURVES)  # self-contained
    assert "http://" not in html and "<link" not in html and "<script" not in html


def test_tensorboard_gets_each_epochs_scalars_by_group(curves_run):
    run, _, calls, _ = curves_run
    records = read_jsonl(run / "metrics.jsonl")
    assert calls[0] == ("dir", str(run / "tensorboard")) and calls.count(("closed",)) == 2  # a writer per process
    scalars = {(tag, step): value for tag, value, step in (c for c in calls if len(c) == 3)}
    groups = {"train_loss": "loss/train", "test_loss": "loss/test", "train_acc": "accuracy/train",
              "test_acc": "accuracy/test", "test_top5": "accuracy/test_top5", "holdout_acc": "accuracy/holdout",
              "lr": "lr", "epoch_time": "time/epoch_s"}
    assert scalars == {(tag, r["epoch"]): float(r[key]) for r in records for key, tag in groups.items()}


def test_tensorboard_event_files_read_back(tmp_path):
    """With the real package: the scalars are in an event file TensorBoard reads."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from noisydarts.viz.callbacks import TensorBoardCallback

    cb = TensorBoardCallback()
    for epoch in (1, 2):
        cb.on_epoch({"epoch": epoch, "train_loss": 2.0 / epoch, "test_acc": 10.0 * epoch, "lr": 0.1}, tmp_path)
    cb.on_end(None)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("accuracy/test")] == [(1, 10.0), (2, 20.0)]
    assert [e.step for e in events.Scalars("loss/train")] == [1, 2]


def test_missing_tensorboard_is_one_line_before_any_work(no_tensorboard, tmp_path, capsys):
    code = main(["train", "noisydarts_a", "--tensorboard", "--set", "epochs=1", "--set", "data.name=cifar10-mini",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "noisydarts: error: --tensorboard needs the tensorboard package: " \
                                        "pip install tensorboard"
    assert not (tmp_path / "run").exists()  # said before the run directory was made


def test_resume_refuses_the_output_flags(curves_run, capsys):
    for flag in ("--no-plots", "--tensorboard"):
        assert main(["train", "--resume", str(curves_run[0]), flag]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "give only --resume DIR" in err


def test_no_plots_then_the_plot_and_report_commands(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["noisydarts_a", "--no-plots", "--set", "epochs=1", "--set", "network.channels=8", "--set",
            "network.layers=3", "--set", "data.name=cifar10-mini", "--set", "data.limit=32", "--set", "batch_size=16",
            "--set", "device=cpu", "--out", str(run), "--no-progress"]
    assert main(["train", *args]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["plots"] is False
    assert not (run / "plots").exists() and not (run / "report.md").exists()
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    printed = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[1] for p in printed if p.endswith(".png")} == CURVES
    assert all((run / "plots" / name).is_file() for name in CURVES)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    record = read_jsonl(run / "metrics.jsonl")[0]
    assert f"| 1 | {_fmt(record['train_loss'])} | {_fmt(record['train_acc'])} |" in (run / "report.md").read_text()


def test_several_training_runs_are_overlaid(curves_run, tmp_path):
    first = curves_run[0]
    second = shutil.copytree(first, tmp_path / "second")
    records = read_jsonl(second / "metrics.jsonl")
    (second / "metrics.jsonl").write_text("".join(json.dumps(r | {"test_acc": 50.0 + r["epoch"]}) + "\n"
                                                  for r in records))
    for picture in (second / "plots").iterdir():  # newer than the metrics: the report takes them as they are
        os.utime(picture)
    md, html = write_report([first, second], out=tmp_path / "both")
    assert (tmp_path / "both" / "overlay" / "overlay_curves.png").is_file()
    text = md.read_text()
    assert "## The runs overlaid" in text and text.count("### Metrics per epoch") == 2
    assert "|  | run | second |" in text  # the summary: a column per run
    fig = overlay_curves_figure([load_train_data(first), load_train_data(second)], ["run", "second"])
    accuracy = [list(line.get_ydata()) for line in fig.axes[0].get_lines()]
    assert accuracy == [[r["test_acc"] for r in read_jsonl(first / "metrics.jsonl")], [51.0, 52.0]]
    with pytest.raises(Exception, match="--edge"):
        write_report([first, second], out=tmp_path / "edge", edge="normal:1")


def _search_run(path):
    """The smallest search run the plots read: an NB201 supernet's alpha at one epoch."""
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"epochs": 1, "space": {"name": "nb201"}}))
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 2.0, "val_acc": 10.0,
                                                    "alpha": {"cell": [[0.2] * 5] * 6}}) + "\n")
    return path


def test_runs_of_both_kinds_and_other_directories_are_one_line_errors(curves_run, tmp_path, capsys):
    search = _search_run(tmp_path / "search")
    assert main(["report", str(curves_run[0]), str(search), "--out", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a training run" in err and "a search run" in err and "separately" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("epochs: 3\n")
    (other / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.0}) + "\n")
    for command in ("plot", "report"):
        assert main([command, str(other)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "neither a search run" in err and "nor a training run" in err
    broken = shutil.copytree(curves_run[0], tmp_path / "broken")
    (broken / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0}) + "\n")
    assert main(["plot", str(broken)]) == 2
    assert "without train_acc, test_loss, test_acc" in capsys.readouterr().err

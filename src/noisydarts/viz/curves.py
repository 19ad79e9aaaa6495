"""Curves of a training run (``noisydarts train``), drawn from its ``metrics.jsonl`` and ``config.yaml``.

* ``loss``: the training and test loss per epoch (and the holdout loss, where a run records one);
* ``accuracy``: training, test top-1, test top-5 and holdout accuracy per epoch, with the epoch
  that ``best.pt`` keeps (``selection``) marked;
* ``lr``: the learning rate each epoch trained with;
* ``cells``: the trained architecture's cells (:func:`noisydarts.viz.plots.cell_figure`).

Test top-5 is drawn where it says something: not when it is 100 % at every epoch (5 classes or
fewer, where every label is in the top 5). A training run is told from a search run by its
config.yaml (:data:`noisydarts.runtime.runs.RUN_MARKERS`: a ``network`` section and no ``space``);
everything works on an interrupted run and on one epoch. Several training runs are overlaid in
one figure (``overlay_curves``: test accuracy, holdout accuracy, the training and test loss, one
line per run) by :func:`overlay_curves_figure`, which ``noisydarts report A B`` draws.

The figures use fixed margins rather than ``tight_layout`` (which draws a figure once more): the
three curves cost about 0.1 s each in PNG and SVG, so the plots and the report stay well under a
second or two of a training run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from ..errors import UserError
from ..runtime.runs import read_jsonl, run_kind
from .plots import DPI, _integer_epochs, read_config_mapping

#: The metrics.jsonl keys a training run has at every epoch (what tells it from another file).
REQUIRED = ("train_loss", "train_acc", "test_loss", "test_acc")
#: The record key each ``selection`` picks best.pt's epoch by (the loop's rule: the first best).
SELECTED_ON = {"holdout": "holdout_acc", "test": "test_acc"}
#: One colour per split, the same in every figure.
SPLIT_COLORS = {"train": "#1f77b4", "test": "#d62728", "test top-5": "#ff9896", "holdout": "#2ca02c", "lr": "#9467bd"}
CURVE_STEMS = ("loss", "accuracy", "lr")
CAPTIONS = {
    "loss": "Training and test loss (cross-entropy; training: with drop-path, augmentation and label smoothing) "
            "per epoch.",
    "accuracy": "Training, test (top-1, top-5) and holdout accuracy per epoch; the star marks the epoch best.pt keeps.",
    "lr": "Learning rate of each epoch.",
    "cells": "The cell(s) of the trained architecture.",
    "overlay_curves": "Test and holdout accuracy and the training and test loss of each run per epoch",
}


# --- reading a run ---------------------------------------------------------------------------------

@dataclass
class TrainRunData:
    """A training run as the figures and the report read it."""

    run_dir: Path
    config: dict
    records: list[dict]
    genotype_text: str | None      # genotype.json's text (a training run has it from the start)
    finished: bool                 # weights.pt is written (every planned epoch trained)
    space: str = ""                # the architecture's space (genotype.json)

    kind = "train"

    @property
    def epochs(self) -> list[int]:
        return [int(r.get("epoch", i + 1)) for i, r in enumerate(self.records)]

    @property
    def epochs_planned(self) -> int | None:
        return self.config.get("epochs")

    @property
    def title(self) -> str:
        status = "" if self.finished else f" (interrupted after {len(self.records)}/{self.epochs_planned} epochs)"
        return f"{self.run_dir.name}{status}"

    @property
    def selected_on(self) -> str | None:
        """The metrics key best.pt was selected on (None: ``selection: none``, no best.pt)."""
        key = SELECTED_ON.get(str(self.config.get("selection", "none")))
        return key if key and any(key in r for r in self.records) else None

    @property
    def best(self) -> tuple[int, float] | None:
        """``(epoch, accuracy)`` of the epoch best.pt holds: the first with the highest selected accuracy."""
        key = self.selected_on
        if key is None:
            return None
        scored = [(e, float(r[key])) for e, r in zip(self.epochs, self.records) if _number(r.get(key))]
        return max(scored, key=lambda pair: pair[1]) if scored else None  # max keeps the first of equals

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(epochs, values)`` of one metric, over the epochs that recorded it."""
        pairs = [(e, float(r[key])) for e, r in zip(self.epochs, self.records) if _number(r.get(key))]
        return [e for e, _ in pairs], [v for _, v in pairs]

    @property
    def has_top5(self) -> bool:
        """Whether test top-5 says anything: not when it is 100 % at every epoch (<= 5 classes)."""
        values = self.series("test_top5")[1]
        return bool(values) and min(values) < 100.0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_training_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a training run (:func:`noisydarts.runtime.runs.run_kind`)."""
    return run_kind(run_dir) == "train"


def load_train_data(run_dir: str | Path) -> TrainRunData:
    """Read a training run directory; anything that makes it unplottable is a :class:`UserError`."""
    run_dir = Path(run_dir)
    metrics, cfg_path = run_dir / "metrics.jsonl", run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: give the directory of a training run")
    if not metrics.is_file() or not cfg_path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl and config.yaml: give the directory of a training run")
    config = read_config_mapping(cfg_path, "training")
    records = read_jsonl(metrics)
    if not records:
        raise UserError(f"{metrics} holds no finished epoch yet: plot the run after its first epoch")
    missing = [k for k in REQUIRED if any(not _number(r.get(k)) for r in records)]
    if missing:
        raise UserError(f"{metrics} has epochs without {', '.join(missing)}: is it a noisydarts training run?")
    try:
        genotype = json.loads((run_dir / "genotype.json").read_text())
        genotype = genotype if isinstance(genotype, dict) else {}
    except (OSError, ValueError):
        genotype = {}  # no or a damaged genotype.json: the curves do not need it
    text = genotype.get("text")
    return TrainRunData(run_dir, config, records, text if isinstance(text, str) else None,
                        (run_dir / "weights.pt").is_file(), str(genotype.get("space", "darts" if text else "")))


# --- the figures -------------------------------------------------------------------------------------

def _curve_axes(title: str, ylabel: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(7, 4.2), dpi=DPI)
    ax = fig.subplots()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _plot(ax, data: TrainRunData, key: str, label: str, **style) -> bool:
    epochs, values = data.series(key)
    if not values:
        return False
    marker = dict(marker="o", ms=3.5) if len(epochs) <= 30 else {}
    ax.plot(epochs, values, label=label, color=SPLIT_COLORS[label], lw=1.8, **marker, **style)
    return True


def _finish(fig: Figure, ax, data: TrainRunData, legend: bool = True) -> Figure:
    epochs = data.epochs
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    _integer_epochs(ax, epochs)
    if legend:
        ax.legend(fontsize=8, frameon=False, loc="best")
    # fixed margins in inches (tight_layout would draw the figure once more)
    width, height = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.2 / width, top=1 - 0.45 / height, bottom=0.6 / height)
    return fig


def loss_figure(data: TrainRunData) -> Figure:
    """Training and test loss per epoch (holdout too, where recorded); lines labelled by split."""
    fig, ax = _curve_axes(f"Loss \u2014 {data.title}", "cross-entropy loss")
    _plot(ax, data, "train_loss", "train")
    _plot(ax, data, "test_loss", "test")
    _plot(ax, data, "holdout_loss", "holdout")
    return _finish(fig, ax, data)


def accuracy_figure(data: TrainRunData) -> Figure:
    """Training, test top-1, test top-5 (where it means something) and holdout accuracy per epoch;
    a star on the epoch best.pt keeps."""
    fig, ax = _curve_axes(f"Accuracy \u2014 {data.title}", "accuracy (%)")
    _plot(ax, data, "train_acc", "train")
    _plot(ax, data, "test_acc", "test")
    if data.has_top5:
        _plot(ax, data, "test_top5", "test top-5", ls="--")
    _plot(ax, data, "holdout_acc", "holdout")
    best = data.best
    if best is not None:
        split = "holdout" if data.selected_on == "holdout_acc" else "test"
        ax.plot([best[0]], [best[1]], ls="none", marker="*", ms=14, color="#222222", zorder=5,
                label=f"best.pt: epoch {best[0]}, {split} {best[1]:.2f} %")
    return _finish(fig, ax, data)


def lr_figure(data: TrainRunData) -> Figure:
    """The learning rate each epoch trained with."""
    fig, ax = _curve_axes(f"Learning rate \u2014 {data.title}", "learning rate")
    _plot(ax, data, "lr", "lr")
    ax.set_ylim(bottom=0)
    return _finish(fig, ax, data, legend=False)


FIGURES = {"loss": loss_figure, "accuracy": accuracy_figure, "lr": lr_figure}


# --- several runs -----------------------------------------------------------------------------------

def overlay_curves_figure(datas: list[TrainRunData], labels: list[str]) -> Figure | None:
    """Several training runs in one figure: test accuracy, holdout accuracy (where any run has
    one), the training and test loss per epoch, one line per run."""
    from .overlay import Group, _key, _panels_figure

    panels = [("test accuracy (top-1)", "accuracy (%)", _key("test_acc")),
              ("holdout accuracy", "accuracy (%)", _key("holdout_acc")),
              ("training loss", "loss", _key("train_loss")),
              ("test loss", "loss", _key("test_loss"))]
    return _panels_figure([Group(label, [d]) for label, d in zip(labels, datas)], panels,
                          "Training runs over the epochs", cols=2)

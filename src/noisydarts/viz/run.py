"""Every picture of one run, written into ``RUN_DIR/plots/`` (``noisydarts plot``): a search run's
(:mod:`noisydarts.viz.plots`) or a training run's (:mod:`noisydarts.viz.curves`), told apart by
:func:`load_run`."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from .curves import CURVE_STEMS, FIGURES as CURVE_FIGURES, TrainRunData, is_training_run, load_train_data
from .overlay import hessian_figure
from .plots import (RunData, alpha_figure, cell_figure, dominant_figure, load_run_data, nb201_accuracy_figure,
                    save_figure)


def load_run(run_dir: str | Path) -> RunData | TrainRunData:
    """A search run's or a training run's data, by its config.yaml (a training run has a
    ``network`` section and no ``space``); anything else gets the search loader, whose errors
    say what is missing."""
    return load_train_data(run_dir) if is_training_run(run_dir) else load_run_data(run_dir)


def plot_stems(data: RunData | TrainRunData) -> list[str]:
    """The file stems of every picture of the run, in reading order."""
    if isinstance(data, TrainRunData):
        return list(CURVE_STEMS) + (["cells"] if data.genotype_text else [])
    stems = [f"alpha_{kind}" for kind in data.kinds] + ["dominant_ops"]
    stems += ["cells"] if data.genotype_text else []
    stems += ["hessian"] if any("hessian_eig" in r for r in data.records) else []  # the Hessian monitor's
    return stems + (["nb201_accuracy"] if data.has_benchmark_accuracy else [])


def make_figure(data: RunData | TrainRunData, stem: str) -> Figure | None:
    if stem in CURVE_FIGURES:
        return CURVE_FIGURES[stem](data)
    if stem.startswith("alpha_"):
        return alpha_figure(data, stem[len("alpha_"):])
    if stem == "hessian":
        return hessian_figure(data)
    return {"dominant_ops": dominant_figure, "cells": cell_figure, "nb201_accuracy": nb201_accuracy_figure}[stem](data)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write every plot of a search or training run into ``RUN_DIR/plots/`` (PNG and SVG); return the files."""
    data = load_run(run_dir)
    out = data.run_dir / "plots"
    out.mkdir(exist_ok=True)
    paths = []
    for stem in plot_stems(data):
        fig = make_figure(data, stem)
        if fig is not None:
            paths += save_figure(fig, out / stem)
    return paths


def up_to_date_plots(data: RunData | TrainRunData) -> list[Path] | None:
    """The run's PNGs if every one exists and is newer than the metrics and genotype, else None."""
    sources = [data.run_dir / n for n in ("metrics.jsonl", "genotype.json", "config.yaml")]
    newest = max(p.stat().st_mtime for p in sources if p.exists())
    pngs = [data.run_dir / "plots" / f"{stem}.png" for stem in plot_stems(data)]
    if all(p.is_file() and p.stat().st_mtime >= newest for p in pngs):
        return pngs
    return None

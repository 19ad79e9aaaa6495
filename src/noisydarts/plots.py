"""Pictures of a search run, drawn from its ``metrics.jsonl`` and ``config.yaml``.

* ``alpha_<cell>``: the architecture weight of every op on every edge over the epochs, one small
  panel per edge (Figure 1 of NoisyDARTS);
* ``dominant_ops``: how many edges each op currently wins (argmax per edge), stacked over the
  epochs (Figure 4 of NoisyDARTS);
* ``cell_<cell>``: the derived cell as a graph (Figures 2-3 of NoisyDARTS), drawn with matplotlib
  only (no Graphviz);
* ``nb201_accuracy``: for NAS-Bench-201 runs, the benchmark test accuracy of the architecture
  derived after each epoch.

Everything works on an interrupted run (partial metrics, no ``genotype.json``) and on one epoch.
Figures are built as :class:`matplotlib.figure.Figure` objects (Agg canvas, no pyplot state),
rendered to bytes and written atomically as PNG and SVG into ``RUN_DIR/plots/``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch

from .errors import UserError
from .runs import atomic_write_bytes, read_jsonl

#: One colour per op, the same in every plot. Skip connections are red: they are the story.
OP_COLORS: dict[str, str] = {
    "none": "#b0b0b0",
    "skip_connect": "#d62728",
    "avg_pool_3x3": "#8c564b",
    "max_pool_3x3": "#e377c2",
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#17becf",
    "sep_conv_7x7": "#9edae5",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#bcbd22",
    "nor_conv_1x1": "#ff7f0e",
    "nor_conv_3x3": "#9467bd",
}
NB201_ACCURACIES = {"cifar10_test": "CIFAR-10", "cifar100_test": "CIFAR-100", "imagenet16_test": "ImageNet16-120"}
NB201_OP_ORDER = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
FORMATS = ("png", "svg")
DPI = 110


def op_color(op: str) -> str:
    """The op's fixed colour; an op added later gets a stable colour from its name."""
    if op in OP_COLORS:
        return OP_COLORS[op]
    extra = ["#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2"]
    return extra[sum(map(ord, op)) % len(extra)]


# --- reading a run --------------------------------------------------------------------------------

@dataclass
class RunData:
    run_dir: Path
    config: dict
    records: list[dict]
    genotype_text: str | None      # genotype.json's text when finished, else the last epoch's
    finished: bool

    @property
    def space(self) -> str:
        return str(self.config.get("space", {}).get("name", "darts"))

    @property
    def epochs_planned(self) -> int | None:
        return self.config.get("epochs")

    @property
    def epochs(self) -> list[int]:
        return [int(r.get("epoch", i + 1)) for i, r in enumerate(self.records)]

    @property
    def kinds(self) -> list[str]:
        return list(self.records[-1]["alpha"])

    @property
    def ops(self) -> list[str]:
        ops = self.config.get("space", {}).get("ops")
        if ops is None and self.space == "nb201":
            ops = list(NB201_OP_ORDER)
        return list(ops or [])

    @property
    def is_nb201(self) -> bool:
        return any("cifar10_test" in r for r in self.records)

    def alpha(self, kind: str) -> np.ndarray:
        """[epochs, edges, ops] architecture weights of one cell type."""
        return np.asarray([r["alpha"][kind] for r in self.records], dtype=float)

    @property
    def title(self) -> str:
        done = len(self.records)
        status = "" if self.finished else f" (interrupted after {done}/{self.epochs_planned} epochs)"
        return f"{self.run_dir.name}{status}"


def load_run_data(run_dir: str | Path) -> RunData:
    """Read a run directory; anything that makes it unplottable is a :class:`UserError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: give the directory of a search run")
    metrics, cfg_path = run_dir / "metrics.jsonl", run_dir / "config.yaml"
    if not metrics.is_file() or not cfg_path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl and config.yaml: give the directory of a search run")
    records = read_jsonl(metrics)
    if not records:
        raise UserError(f"{metrics} holds no finished epoch yet: plot the run after its first epoch")
    if any(not isinstance(r.get("alpha"), dict) or not r["alpha"] for r in records):
        raise UserError(f"{metrics} has epochs without 'alpha' weights: is it a noisydarts search run?")
    try:
        config = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{cfg_path} is not valid YAML ({str(e).splitlines()[0]})") from e
    genotype_text, finished = records[-1].get("genotype"), False
    gpath = run_dir / "genotype.json"
    if gpath.is_file():
        try:
            genotype_text, finished = json.loads(gpath.read_text())["text"], True
        except (ValueError, KeyError, TypeError):
            pass  # a damaged genotype.json: the last epoch's genotype is the same cell
    data = RunData(run_dir, config, records, genotype_text, finished)
    widths = {len(row) for r in records for rows in r["alpha"].values() for row in rows}
    if data.ops and widths != {len(data.ops)}:
        raise UserError(f"{run_dir}: alpha rows have {sorted(widths)} weights but space.ops lists "
                        f"{len(data.ops)} ops; config.yaml and metrics.jsonl do not belong together")
    if not data.ops:
        data.config.setdefault("space", {})["ops"] = [f"op{i}" for i in range(widths.pop())]
    return data


# --- edge names -----------------------------------------------------------------------------------

#: Cell inputs and output written with Unicode subscripts (no mathtext: it is slow to render).
C_PREV_PREV, C_PREV, C_OUT = "c\u2096\u208b\u2082", "c\u2096\u208b\u2081", "c\u2096"


def _darts_node(j: int) -> str:
    return (C_PREV_PREV, C_PREV)[j] if j < 2 else str(j - 2)


def edge_labels(data: RunData, kind: str, num_edges: int) -> list[str]:
    """'target <- source' for each alpha row, in the supernet's edge order."""
    if data.space == "nb201" or (data.is_nb201 and num_edges == 6):
        from .nb201 import NB201_EDGES

        return [f"{t} \u2190 {s}" for t, s in NB201_EDGES]
    edges, node = [], 0
    while len(edges) < num_edges:  # dense DARTS cell: node i takes every earlier node and both inputs
        edges += [(node + 2, j) for j in range(node + 2)]
        node += 1
    return [f"{_darts_node(t)} \u2190 {_darts_node(s)}" for t, s in edges[:num_edges]]


# --- the figures ----------------------------------------------------------------------------------

def _op_legend(fig: Figure, ops, **kw) -> None:
    handles = [Line2D([], [], color=op_color(op), lw=2.5, label=op) for op in ops]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(ops), 6), frameon=False, fontsize=9, **kw)


def alpha_figure(data: RunData, kind: str) -> Figure:
    """Figure 1 style: per edge, each op's weight over the epochs."""
    alpha, ops, epochs = data.alpha(kind), data.ops, data.epochs
    n_edges = alpha.shape[1]
    cols = min(n_edges, 5 if n_edges > 6 else 3)
    rows = math.ceil(n_edges / cols)
    fig = Figure(figsize=(3.0 * cols, 2.3 * rows + 1.3), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    labels = edge_labels(data, kind, n_edges)
    marker = "o" if len(epochs) <= 12 else None
    # Zoom on the weights' range (shared by all panels): early in a search they all sit near
    # 1/K and would be one flat line on a 0..1 axis. The dotted line marks that uniform 1/K.
    low, high = float(alpha.min()), float(alpha.max())
    pad = max(0.08 * (high - low), 2e-4)
    uniform = 1.0 / len(ops)
    for e, ax in enumerate(axes.flat):
        if e >= n_edges:
            ax.set_visible(False)
            axes.flat[e - cols].xaxis.set_tick_params(labelbottom=True)  # the panel above ends its column
            axes.flat[e - cols].set_xlabel("epoch", fontsize=9)
            continue
        for k, op in enumerate(ops):
            ax.plot(epochs, alpha[:, e, k], color=op_color(op), lw=1.6, marker=marker, ms=3)
        ax.axhline(uniform, color="black", lw=0.8, ls=":", zorder=0)
        ax.set_title(f"edge {labels[e]}", fontsize=9)
        ax.set_ylim(max(low - pad, 0.0), high + pad)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("weight", fontsize=9)
    if len(epochs) == 1:
        axes[0, 0].set_xlim(epochs[0] - 1, epochs[0] + 1)
    _integer_epochs(axes[0, 0], epochs)
    fig.suptitle(f"Architecture weights per edge, {kind} cell (dotted: uniform 1/{len(ops)}) \u2014 {data.title}",
                 fontsize=11)
    _op_legend(fig, ops)
    # Fixed margins in inches rather than tight_layout: that would draw the 15-panel figure once more.
    height, width = fig.get_figheight(), fig.get_figwidth()
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, top=1 - 0.55 / height, bottom=1.15 / height,
                        hspace=0.45, wspace=0.12)
    return fig


def dominant_counts(alpha: np.ndarray, num_ops: int) -> np.ndarray:
    """[ops, epochs]: on how many edges each op has the largest weight ('none' included)."""
    winners = alpha.argmax(axis=2)  # [epochs, edges]
    return np.stack([(winners == k).sum(axis=1) for k in range(num_ops)])


def dominant_figure(data: RunData) -> Figure:
    """Figure 4 style: stacked counts of the dominant op per edge over the epochs."""
    kinds, ops, epochs = data.kinds, data.ops, data.epochs
    fig = Figure(figsize=(5.2 * len(kinds), 4.2), dpi=DPI)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        alpha = data.alpha(kind)
        counts = dominant_counts(alpha, len(ops))
        colors = [op_color(op) for op in ops]
        if len(epochs) == 1:  # an area needs two epochs; one epoch is one stacked bar
            bottom = 0
            for k in range(len(ops)):
                ax.bar(epochs, counts[k], bottom=bottom, color=colors[k], width=0.6)
                bottom = bottom + counts[k]
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        else:
            ax.stackplot(epochs, counts, colors=colors, alpha=0.9, edgecolor="white", linewidth=0.3)
            ax.set_xlim(epochs[0], epochs[-1])
        ax.set_ylim(0, alpha.shape[1])
        ax.set_title(f"{kind} cell ({alpha.shape[1]} edges)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("edges won (argmax of weights)")
        _integer_epochs(ax, epochs)
    fig.suptitle(f"Dominant operations \u2014 {data.title}", fontsize=11)
    fig.legend(handles=[Patch(color=op_color(op), label=op) for op in ops], loc="lower center",
               ncol=min(len(ops), 4 if len(kinds) == 1 else 7), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.13 if len(kinds) > 1 or len(ops) <= 4 else 0.18, 1, 0.95))
    return fig


def _integer_epochs(ax, epochs) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))


def nb201_accuracy_figure(data: RunData) -> Figure:
    """Benchmark test accuracy of the architecture derived after each epoch."""
    fig = Figure(figsize=(7, 4.2), dpi=DPI)
    ax = fig.subplots()
    epochs = data.epochs
    colors = {"cifar10_test": "#1f77b4", "cifar100_test": "#ff7f0e", "imagenet16_test": "#2ca02c"}
    for key, name in NB201_ACCURACIES.items():
        values = [r.get(key) for r in data.records]
        xs = [e for e, v in zip(epochs, values) if v is not None]
        ys = [float(v) for v in values if v is not None]
        if not ys:
            continue
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=4, color=colors[key], label=f"{name} (final {ys[-1]:.2f}%)")
    if any("skip_count" in r for r in data.records):
        twin = ax.twinx()
        twin.step(epochs, [r.get("skip_count", np.nan) for r in data.records], where="mid",
                  color=op_color("skip_connect"), ls="--", lw=1.2, label="skip connections in cell")
        twin.set_ylabel("skip connections in derived cell", color=op_color("skip_connect"))
        twin.set_ylim(-0.2, 6.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy of derived architecture (%)")
    ax.set_title(f"NAS-Bench-201 accuracy of the derived cell \u2014 {data.title}", fontsize=10)
    ax.grid(alpha=0.3)
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    _integer_epochs(ax, epochs)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


# --- cell diagrams ---------------------------------------------------------------------------------

def _draw_graph(ax, positions: dict, edges: list[tuple], node_colors: dict) -> None:
    """Nodes as labelled circles; edges ``(source, target, op[, rad])`` as curved arrows labelled
    with the op (``op`` None: an unlabelled grey dashed arrow, 'none': a dashed one)."""
    ax.set_aspect("equal")
    ax.axis("off")
    cy = sum(y for _, y in positions.values()) / len(positions)
    extent = list(positions.values())  # node centres and label centres: what must be visible
    for src, dst, op, *fixed_rad in edges:
        (x1, y1), (x2, y2) = positions[src], positions[dst]
        # Bow each labelled edge away from the middle, longer edges more, so that an edge that
        # skips nodes passes around them (arc3: rad > 0 bends a rightward edge downwards).
        outward = 1.0 if (y1 + y2) / 2 < cy - 1e-9 else -1.0 if (y1 + y2) / 2 > cy + 1e-9 else 1.0
        span = math.hypot(x2 - x1, y2 - y1)
        rad = 0.0 if op is None else outward * min(0.12 + 0.035 * span, 0.4)
        rad = fixed_rad[0] if fixed_rad else rad
        dashed = op == "none"
        color = "#999999" if op is None else op_color(op)
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=14, lw=2.0 if op else 1.0, color=color, shrinkA=17, shrinkB=17,
                                     linestyle="--" if dashed or op is None else "-", zorder=1))
        if op is None or dashed:
            continue
        # Midpoint of matplotlib's arc3 Bezier curve (equal aspect keeps data and display alike).
        mx, my = (x1 + x2) / 2 + 0.5 * rad * (y2 - y1), (y1 + y2) / 2 - 0.5 * rad * (x2 - x1)
        extent.append((mx, my))
        ax.text(mx, my, op, fontsize=9, ha="center", va="center", zorder=3,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=1.2))
    for name, (x, y) in positions.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=12, zorder=4,
                bbox=dict(boxstyle="circle,pad=0.35" if len(name) <= 2 else "round,pad=0.4",
                          fc=node_colors.get(name, "#fff2b3"), ec="black"))
    xs, ys = zip(*extent)
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)


def darts_cell_figure(data: RunData, genotype) -> Figure:
    kinds = ["normal", "reduce"]
    nodes = genotype.nodes
    fig = Figure(figsize=(2.0 * nodes + 5.0, 4.4 * len(kinds)), dpi=DPI)
    axes = fig.subplots(len(kinds), 1, squeeze=False)[:, 0]
    for ax, kind in zip(axes, kinds):
        names = {0: C_PREV_PREV, 1: C_PREV, **{j + 2: str(j) for j in range(nodes)}}
        out = C_OUT
        positions = {names[0]: (0.0, 1.6), names[1]: (0.0, -1.6), out: (2.0 * nodes + 1.6, 0.0)}
        for j in range(nodes):
            positions[names[j + 2]] = (2.0 + 2.0 * j, 0.9 if j % 2 == 0 else -0.9)
        edges = [(names[src], names[i // 2 + 2], op) for i, (op, src) in enumerate(genotype.cell(kind))]
        edges += [(names[j], out, None) for j in getattr(genotype, kind + "_concat")]
        colors = {names[0]: "#a8d5ba", names[1]: "#a8d5ba", out: "#f4b6b6"}
        _draw_graph(ax, positions, edges, colors)
        skips = genotype.count("skip_connect", kind)
        ax.set_title(f"{kind} cell ({skips} skip connection{'s' * (skips != 1)})", fontsize=10)
    fig.suptitle(f"Derived cells \u2014 {data.title}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def nb201_cell_figure(data: RunData, arch) -> Figure:
    from .nb201 import NB201_EDGES

    fig = Figure(figsize=(8.0, 4.4), dpi=DPI)
    ax = fig.subplots()
    positions = {"0": (0.0, 0.0), "1": (2.4, 0.0), "2": (4.8, 0.0), "3": (7.2, 0.0)}
    # Nodes on a line: neighbours joined straight, 0->2 and 0->3 bow above (by 1.2 and 1.8),
    # 1->3 below, so no two labels meet.
    rads = {(1, 0): 0.0, (2, 0): -0.5, (2, 1): 0.0, (3, 0): -0.5, (3, 1): 0.5, (3, 2): 0.0}
    edges = [(str(s), str(t), op, rads[(t, s)]) for (t, s), op in zip(NB201_EDGES, arch.ops)]
    _draw_graph(ax, positions, edges, {"0": "#a8d5ba", "3": "#f4b6b6"})
    ax.set_title(f"NAS-Bench-201 cell (node 0 = input, 3 = output; dashed = none)\n{arch}", fontsize=9)
    fig.suptitle(f"Derived cell \u2014 {data.title}", fontsize=11)
    fig.tight_layout()
    return fig


def cell_figure(data: RunData) -> Figure | None:
    """The final genotype drawn as a graph, or None when there is none to draw."""
    text = data.genotype_text
    if not text:
        return None
    if data.space == "nb201" or text.lstrip().startswith("|"):
        from .nb201 import NB201Arch

        return nb201_cell_figure(data, NB201Arch.parse(text))
    if text.lstrip().startswith("Genotype("):
        from .genotype import Genotype

        return darts_cell_figure(data, Genotype.parse(text))
    return None


# --- writing ------------------------------------------------------------------------------------

def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Render the figure to PNG and SVG bytes and write each atomically next to ``stem``."""
    paths = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
        path = stem.with_suffix("." + fmt)
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def plot_stems(data: RunData) -> list[str]:
    """The file stems of every picture of the run, in reading order."""
    stems = [f"alpha_{kind}" for kind in data.kinds] + ["dominant_ops"]
    stems += ["cells"] if data.genotype_text else []
    stems += ["hessian"] if any("hessian_eig" in r for r in data.records) else []  # the Hessian monitor's
    return stems + (["nb201_accuracy"] if data.is_nb201 else [])


def make_figure(data: RunData, stem: str) -> Figure | None:
    if stem.startswith("alpha_"):
        return alpha_figure(data, stem[len("alpha_"):])
    if stem == "hessian":
        from .overlay import hessian_figure

        return hessian_figure(data)
    return {"dominant_ops": dominant_figure, "cells": cell_figure, "nb201_accuracy": nb201_accuracy_figure}[stem](data)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write every plot of a run into ``RUN_DIR/plots/`` (PNG and SVG); return the files."""
    data = load_run_data(run_dir)
    out = data.run_dir / "plots"
    out.mkdir(exist_ok=True)
    paths = []
    for stem in plot_stems(data):
        fig = make_figure(data, stem)
        if fig is not None:
            paths += save_figure(fig, out / stem)
    return paths


def up_to_date_plots(data: RunData) -> list[Path] | None:
    """The run's PNGs if every one exists and is newer than the metrics and genotype, else None."""
    sources = [data.run_dir / n for n in ("metrics.jsonl", "genotype.json", "config.yaml")]
    newest = max(p.stat().st_mtime for p in sources if p.exists())
    pngs = [data.run_dir / "plots" / f"{stem}.png" for stem in plot_stems(data)]
    if all(p.is_file() and p.stat().st_mtime >= newest for p in pngs):
        return pngs
    return None

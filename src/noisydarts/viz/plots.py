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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch

from ..errors import UserError
from ..runtime.runs import atomic_write_bytes, read_jsonl
from ..errors import read_text

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
    "noise": "#7f7f7f",  # RobustDARTS S4
    # RobustDARTS S1: two ops per edge, a different pair on each edge (columns, not op names)
    "op 1": "#393b79", "op 2": "#e7969c",
    # MobileNetV2 space: hue = kernel (3 purple, 5 green, 7 blue), light = expansion 3, dark = 6
    "mb3_k3": "#c5b0d5", "mb3_k5": "#98df8a", "mb3_k7": "#9ecae1",
    "mb6_k3": "#6a3d9a", "mb6_k5": "#33a02c", "mb6_k7": "#2171b5",
}
NB201_ACCURACIES = {"cifar10_test": "CIFAR-10", "cifar100_test": "CIFAR-100", "imagenet16_test": "ImageNet16-120"}
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
        if ops is None:  # a hand-written config: the space's default op list
            from ..spaces import SPACES

            ops = SPACES[self.space].DEFAULTS.get("ops") if self.space in SPACES else None
        return list(ops or [])

    @property
    def has_benchmark_accuracy(self) -> bool:
        """Whether the epochs carry a ground-truth table's accuracies (NAS-Bench-201 runs)."""
        return any("cifar10_test" in r for r in self.records)

    def alpha(self, kind: str) -> np.ndarray:
        """[epochs, edges, ops] architecture weights of one cell type."""
        return np.asarray([r["alpha"][kind] for r in self.records], dtype=float)

    @property
    def title(self) -> str:
        done = len(self.records)
        status = "" if self.finished else f" (interrupted after {done}/{self.epochs_planned} epochs)"
        return f"{self.run_dir.name}{status}"


def read_config_mapping(cfg_path: Path, kind: str) -> dict:
    """The config.yaml of a ``kind`` (search, training) run as a mapping, or one line saying why not."""
    try:
        config = yaml.safe_load(read_text(cfg_path, f"the config.yaml of a {kind} run")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{cfg_path} is not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(config, dict):
        raise UserError(f"{cfg_path} does not hold a config mapping: is it a noisydarts {kind} run?")
    return config


def load_run_data(run_dir: str | Path) -> RunData:
    """Read a run directory; anything that makes it unplottable is a :class:`UserError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: give the directory of a search or training run")
    metrics, cfg_path = run_dir / "metrics.jsonl", run_dir / "config.yaml"
    if not metrics.is_file() or not cfg_path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl and config.yaml: give the directory of a search or "
                        "training run")
    records = read_jsonl(metrics)
    if not records:
        raise UserError(f"{metrics} holds no finished epoch yet: plot the run after its first epoch")
    if any(not isinstance(r.get("alpha"), dict) or not r["alpha"] for r in records):
        raise UserError(f"{run_dir} is neither a search run (its metrics.jsonl has epochs without 'alpha' weights) "
                        "nor a training run (its config.yaml has no network section): give a noisydarts run directory")
    from ..runtime.guard import first_nonfinite_epoch

    if (bad := first_nonfinite_epoch(records)) is not None:
        raise UserError(f"{metrics}: alpha is not finite from epoch {bad} on (the search diverged, or the file "
                        "is damaged): nothing to draw")
    config = read_config_mapping(cfg_path, "search")
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

def edge_labels(data: RunData, kind: str, num_edges: int) -> list[str]:
    """'target <- source' for each alpha row, as the run's space names them."""
    from ..spaces import SPACES

    space = SPACES.get(data.space)
    if space is None:  # a run of a space this install does not have
        return [f"row {i}" for i in range(num_edges)]
    return space.edge_labels(data.config.get("space", {}), kind, num_edges)


def cell_type_name(kind: str) -> str:
    """What one α matrix belongs to: 'normal' -> 'normal cell', 'cell3' -> 'cell 3', 'layer' -> 'layers'."""
    if kind in ("normal", "reduce"):
        return f"{kind} cell"
    if kind == "layer":
        return "layers"
    return re.sub(r"(\D)(\d)", r"\1 \2", kind)


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
    # A choice a row does not have (the mbv2 space's masked identity) weighs exactly 0: not zoomed on.
    present = alpha[alpha > 0]
    low, high = float(present.min() if present.size else 0.0), float(alpha.max())
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
        ax.set_title(labels[e], fontsize=9)
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
    fig.suptitle(f"Architecture weights per edge, {cell_type_name(kind)} (dotted: uniform 1/{len(ops)}) \u2014 {data.title}",
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
    cols = min(len(kinds), 4)
    rows = math.ceil(len(kinds) / cols)
    width = max(5.2 * cols, 6.5)
    ncol = max(1, min(len(ops), int(width / 1.6)))
    legend_h = 0.3 + 0.25 * math.ceil(len(ops) / ncol)
    fig = Figure(figsize=(width, 3.9 * rows + legend_h + 0.4), dpi=DPI)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
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
        ax.set_title(f"{cell_type_name(kind)} ({alpha.shape[1]} edges)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("edges won (argmax of weights)")
        _integer_epochs(ax, epochs)
    for ax in axes[len(kinds):]:
        ax.set_visible(False)
    fig.suptitle(f"Dominant operations \u2014 {data.title}", fontsize=11)
    fig.legend(handles=[Patch(color=op_color(op), label=op) for op in ops], loc="lower center",
               ncol=ncol, frameon=False, fontsize=9)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, legend_h / height, 1, 1 - 0.35 / height))
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

#: Sizes in data units (the figures draw 1 data unit as 0.8 inch): a node circle's radius, the
#: height of an op label and the width of one of its characters (9 pt).
_NODE_R, _LABEL_H, _CHAR_W, _INCH_PER_UNIT = 0.42, 0.32, 0.105, 0.8


def _label_box(x: float, y: float, text: str) -> tuple[float, float, float, float]:
    half_w = 0.5 * _CHAR_W * len(text) + 0.08
    return x - half_w, y - _LABEL_H / 2, x + half_w, y + _LABEL_H / 2


def _clearance(box, nodes, boxes) -> float:
    """How far a label box stays from the node circles and the labels already placed (< 0: overlap)."""
    x0, y0, x1, y1 = box
    gaps = []
    for cx, cy in nodes:
        dx, dy = max(x0 - cx, 0.0, cx - x1), max(y0 - cy, 0.0, cy - y1)
        gaps.append(math.hypot(dx, dy) - _NODE_R)
    for bx0, by0, bx1, by1 in boxes:
        gaps.append(max(bx0 - x1, x0 - bx1, by0 - y1, y0 - by1))
    return min(gaps, default=10.0)


def _arc_midpoint(p, q, rad: float) -> tuple[float, float]:
    """Midpoint of matplotlib's ``arc3`` Bezier curve from p to q (equal aspect: data = display)."""
    (x1, y1), (x2, y2) = p, q
    return (x1 + x2) / 2 + 0.5 * rad * (y2 - y1), (y1 + y2) / 2 - 0.5 * rad * (x2 - x1)


def layout_edges(graph) -> list[tuple[str, str, str | None, float, tuple[float, float] | None]]:
    """``(source, target, op, rad, label position)`` for every edge of a :class:`CellGraph`.

    Each labelled edge bows away from the middle line, longer edges more, so that an edge which
    skips nodes passes around them; parallel edges (several ops between two nodes) fan out; and
    when a label would sit on a node or another label, the next candidate curvature is tried."""
    pos = graph.positions
    cy = sum(y for _, y in pos.values()) / len(pos)
    nodes, boxes, out = list(pos.values()), [], []
    seen: dict[tuple[str, str], int] = {}
    for src, dst, op in graph.edges:
        p, q = pos[src], pos[dst]
        k = seen.get((src, dst), 0)
        seen[(src, dst)] = k + 1
        if op is None:  # unlabelled connection (into the output): a gentle fixed bow
            out.append((src, dst, op, graph.bend.get((src, dst), 0.25 if p[1] >= cy else -0.25), None))
            continue
        mid_y = (p[1] + q[1]) / 2
        outward = 1.0 if mid_y < cy - 1e-9 else -1.0 if mid_y > cy + 1e-9 else 1.0
        if q[0] < p[0]:
            outward = -outward
        span = math.hypot(q[0] - p[0], q[1] - p[1])
        base = graph.bend.get((src, dst), outward * min(0.12 + 0.035 * span, 0.45))
        fan = [base + 0.3 * k * (1 if base >= 0 else -1)]
        candidates = fan + [base * f + d for f in (1.0, -1.0) for d in (0.25, -0.25, 0.5, -0.5)]
        best = None
        for rad in candidates:
            mx, my = _arc_midpoint(p, q, rad)
            box = _label_box(mx, my, op)
            gap = _clearance(box, nodes, boxes)
            if best is None or gap > best[0] + 1e-9:
                best = (gap, rad, (mx, my), box)
            if gap >= 0.05:
                break
        _, rad, mid, box = best
        boxes.append(box)
        out.append((src, dst, op, rad, mid))
    return out


def cell_extent(graph, layout) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` in data units of a laid-out cell: nodes, curves and labels."""
    points = list(graph.positions.values())
    for src, dst, op, rad, mid in layout:
        points.append(_arc_midpoint(graph.positions[src], graph.positions[dst], rad))  # every curve in view
        if mid is not None and op != "none":
            points += [(mid[0] - 0.5 * _CHAR_W * len(op), mid[1]), (mid[0] + 0.5 * _CHAR_W * len(op), mid[1])]
    xs, ys = zip(*points)
    return min(xs) - 0.6, max(xs) + 0.6, min(ys) - 0.6, max(ys) + 0.6


def draw_cell(ax, graph, layout=None) -> None:
    """Draw a :class:`noisydarts.spaces.CellGraph`: nodes as labelled circles, edges as curved
    arrows labelled with their op (``none``: dashed, unlabelled; no op: a thin grey arrow)."""
    layout = layout_edges(graph) if layout is None else layout
    ax.set_aspect("equal")
    ax.axis("off")
    colors = {**{n: "#a8d5ba" for n in graph.inputs}, **{n: "#f4b6b6" for n in graph.outputs}}
    for src, dst, op, rad, mid in layout:
        color = "#999999" if op is None else op_color(op)
        ax.add_patch(FancyArrowPatch(graph.positions[src], graph.positions[dst], connectionstyle=f"arc3,rad={rad}",
                                     arrowstyle="-|>", mutation_scale=14, lw=2.0 if op else 1.0, color=color,
                                     shrinkA=17, shrinkB=17, linestyle="--" if op in (None, "none") else "-",
                                     zorder=1))
        if mid is not None and op != "none":
            ax.text(*mid, op, fontsize=9, ha="center", va="center", zorder=3,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=1.2))
    for name, (x, y) in graph.positions.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=12, zorder=4,
                bbox=dict(boxstyle="circle,pad=0.35" if len(name) <= 2 else "round,pad=0.4",
                          fc=colors.get(name, "#fff2b3"), ec="black"))
    x0, x1, y0, y1 = cell_extent(graph, layout)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(graph.title, fontsize=10)


def cell_figure(data: RunData) -> Figure | None:
    """The final genotype's cells, drawn by their space's :meth:`~noisydarts.spaces.Space.cell_graphs`,
    or None when there is no genotype to draw."""
    from ..spaces import parse_genotype, space_of

    if not data.genotype_text:
        return None
    try:
        genotype = parse_genotype(data.genotype_text)
    except UserError:
        return None  # a genotype of a space this install does not have
    graphs = space_of(genotype).cell_graphs(genotype)
    if not graphs:
        return None
    cols = 1 if len(graphs) <= 2 else 4
    rows = math.ceil(len(graphs) / cols)
    layouts = [layout_edges(g) for g in graphs]
    extents = [cell_extent(g, lay) for g, lay in zip(graphs, layouts)]
    # Every panel as large as the largest cell at _INCH_PER_UNIT, plus room for its title.
    panel_w = max(x1 - x0 for x0, x1, _, _ in extents) * _INCH_PER_UNIT
    panel_h = max(y1 - y0 for _, _, y0, y1 in extents) * _INCH_PER_UNIT + 0.2 * (1 + max(g.title.count("\n") for g in graphs))
    fig = Figure(figsize=(panel_w * cols + 0.3, panel_h * rows + 0.6), dpi=DPI)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax, graph, layout in zip(axes, graphs, layouts):
        draw_cell(ax, graph, layout)
    for ax in axes[len(graphs):]:
        ax.set_visible(False)
    fig.suptitle(f"Derived cell{'s' * (len(graphs) > 1)} \u2014 {data.title}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig


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

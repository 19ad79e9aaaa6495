"""Several runs in one set of figures: each quantity over the epochs, one line per run or method.

Used by ``noisydarts report A B C`` (a *group* per run: one line each) and by
``noisydarts compare`` (a group per method: the mean over its seeds, with a band from the
smallest to the largest seed at each epoch). Figures, in reading order, each drawn only when
some run has its data:

* ``overlay_skips``: skip connections in the derived cell(s) (normal, reduction; NB201: the cell);
* ``overlay_alpha``: the architecture weight of every op on one edge (the one whose weights
  changed most over the runs, or a chosen one), one panel per op;
* ``overlay_accuracy``: search-val accuracy and, for NAS-Bench-201 runs, the benchmark's test
  accuracies of the cell derived after each epoch;
* ``overlay_hessian``: the dominant eigenvalue of the architecture Hessian (``monitor.hessian_every``).

At each epoch a group's line is the mean over the runs that reached that epoch (early-stopped
or shorter runs drop out), and its band the min-max over them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import UserError
from .plots import DPI, NB201_ACCURACIES, RunData, edge_labels, save_figure

#: Group colours (matplotlib's tab10, then more): group i always gets colour i.
GROUP_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
CAPTIONS = {
    "overlay_skips": "Skip connections in the derived cell after each epoch",
    "overlay_alpha": "Architecture weights of every op on one edge over the epochs",
    "overlay_accuracy": "Search-val accuracy and NAS-Bench-201 test accuracy of the derived cell over the epochs",
    "overlay_hessian": "Dominant eigenvalue of the architecture Hessian (RobustDARTS' collapse indicator) over the epochs",
}
BAND_NOTE = "line: mean over seeds; band: min-max over seeds"


@dataclass
class Group:
    """Runs drawn as one line (a method's seeds, or a single run)."""

    label: str
    runs: list[RunData]
    color: str | None = None  # None: by position (overlay_figures assigns them once for all figures)

    @property
    def stop_note(self) -> str:
        stops = [r.records[-1]["stopped"] for r in self.runs if isinstance(r.records[-1].get("stopped"), dict)]
        if not stops:
            return ""
        if len(self.runs) == 1:
            return f" (stopped after epoch {stops[0]['epoch']}, {stops[0]['rule']})"
        return f" ({len(stops)}/{len(self.runs)} stopped early)"


def _series(runs: list[RunData], value) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(epochs, mean, low, high)`` of ``value(run, record)`` (None: no value) over the runs, per epoch."""
    per_epoch: dict[int, list[float]] = {}
    for data in runs:
        for epoch, record in zip(data.epochs, data.records):
            v = value(data, record)
            if v is not None:
                per_epoch.setdefault(epoch, []).append(float(v))
    epochs = np.array(sorted(per_epoch), dtype=float)
    values = [per_epoch[int(e)] for e in epochs]
    return (epochs, np.array([np.mean(v) for v in values]), np.array([min(v) for v in values]),
            np.array([max(v) for v in values]))


def _key(name: str):
    return lambda data, record: record.get(name)


def _panels_figure(groups: list[Group], panels: list[tuple[str, str, object]], title: str,
                   integer_y: bool = False, cols: int = 4, sharey: bool = False,
                   reference: float | None = None, legend: bool = True) -> Figure | None:
    """One panel per ``(title, ylabel, value)``, one line (and band) per group; None if no data.
    ``reference``: a dotted horizontal line (e.g. the uniform weight 1/K)."""
    panels = [p for p in panels if any(len(_series(g.runs, p[2])[0]) for g in groups)]
    if not panels:
        return None
    # the legend lists the groups with data here (keeping their colours from the full list)
    groups = [Group(g.label, g.runs, g.color or GROUP_COLORS[i % len(GROUP_COLORS)]) for i, g in enumerate(groups)
              if any(len(_series(g.runs, p[2])[0]) for p in panels)]
    rows = math.ceil(len(panels) / cols)
    cols = math.ceil(len(panels) / rows)  # balanced rows: 5 panels as 3 + 2, not 4 + 1
    ncol = min(len(groups), 3)
    legend_rows = math.ceil(len(groups) / ncol)
    top, bottom = 0.55, 0.6 + (0.15 + 0.25 * legend_rows) * legend  # inches: the title; the x labels and the legend
    fig = Figure(figsize=(max(4.3 * cols, 7.5), 3.0 * rows + 0.45 * (rows - 1) + top + bottom), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    banded = any(len(g.runs) > 1 for g in groups)
    for ax, (panel_title, ylabel, value) in zip(axes.flat, panels):
        for i, group in enumerate(groups):
            epochs, mean, low, high = _series(group.runs, value)
            if not len(epochs):
                continue
            color = group.color or GROUP_COLORS[i % len(GROUP_COLORS)]
            style = dict(marker="o", ms=3) if len(epochs) <= 30 else {}
            if integer_y:
                # counts: a step per epoch reads better than a slope between integers
                ax.step(epochs, mean, where="mid", color=color, lw=1.8)
                ax.plot(epochs, mean, ls="none", color=color, **style)
            else:
                ax.plot(epochs, mean, color=color, lw=1.8, **style)
            if len(group.runs) > 1:
                ax.fill_between(epochs, low, high, color=color, alpha=0.18, lw=0,
                                step="mid" if integer_y else None)
        if reference is not None:
            ax.axhline(reference, color="black", lw=0.8, ls=":", zorder=0)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        if not sharey or ax in axes[:, 0]:
            ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        if integer_y:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            low_y, high_y = ax.get_ylim()
            ax.set_ylim(min(low_y, -0.3), max(high_y, 1.3))
        xs = [e for g in groups for e in _series(g.runs, value)[0]]
        if xs and min(xs) == max(xs):
            ax.set_xlim(min(xs) - 1, max(xs) + 1)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=g.color or GROUP_COLORS[i % len(GROUP_COLORS)], lw=2.5, label=g.label + g.stop_note)
               for i, g in enumerate(groups)]
    fig.suptitle(title + (f"\n{BAND_NOTE}" if banded else ""), fontsize=11, y=1 - 0.08 / fig.get_figheight(), va="top")
    if legend:
        fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    # fixed margins in inches (tight_layout ignores the suptitle and the figure legend)
    height, width = fig.get_figheight(), fig.get_figwidth()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, top=1 - (top + 0.2 * banded) / height,
                        bottom=bottom / height, hspace=0.4, wspace=0.28 if not sharey else 0.12)
    return fig


def skips_figure(groups: list[Group]) -> Figure | None:
    panels = [("normal cell", "skip connections", _key("skip_normal")),
              ("reduction cell", "skip connections", _key("skip_reduce")),
              ("NAS-Bench-201 cell", "skip connections (of 6 edges)", _key("skip_count"))]
    return _panels_figure(groups, panels, "Skip connections in the derived cell", integer_y=True)


def accuracy_figure(groups: list[Group]) -> Figure | None:
    panels = [("search-val accuracy (supernet)", "accuracy (%)", _key("val_acc"))]
    panels += [(f"NAS-Bench-201 {name} test", "test accuracy of derived cell (%)", _key(key))
               for key, name in NB201_ACCURACIES.items()]
    return _panels_figure(groups, panels, "Accuracy over the epochs")


def hessian_figure_of(groups: list[Group], title: str = "Dominant eigenvalue of the architecture Hessian",
                      legend: bool = True) -> Figure | None:
    panels = [("\u03bb_max of \u2207\u00b2_\u03b1 L_val", "eigenvalue", _key("hessian_eig"))]
    return _panels_figure(groups, panels, title, legend=legend)


def hessian_figure(data: RunData) -> Figure | None:
    """The single run's plot of the monitor (``plots/hessian``): its eigenvalue over the epochs."""
    stop = data.records[-1].get("stopped")
    note = f" (stopped after epoch {stop['epoch']}: {stop['rule']})" if isinstance(stop, dict) else ""
    return hessian_figure_of([Group(data.run_dir.name, [data])], f"Hessian monitor \u2014 {data.title}{note}", legend=False)


# --- one edge's weights ----------------------------------------------------------------------------

def _alpha_compatible(groups: list[Group]) -> tuple[list[Group], str, int]:
    """The groups whose runs share the first run's first cell type and edge count."""
    first = groups[0].runs[0]
    kind = first.kinds[0]
    edges = first.alpha(kind).shape[1]
    return [g for g in groups if all(kind in r.kinds and r.alpha(kind).shape[1] == edges for r in g.runs)], kind, edges


def most_changed_edge(groups: list[Group], kind: str) -> int:
    """The edge whose weights moved most from the first to the last epoch, summed over runs and ops."""
    change = None
    for g in groups:
        for data in g.runs:
            a = data.alpha(kind)
            moved = np.abs(a[-1] - a[0]).sum(axis=1)
            change = moved if change is None else change + moved
    return int(np.argmax(change))


def parse_edge(text: str) -> tuple[str | None, int]:
    """``'3'`` or ``'normal:3'`` (cell type and 0-based edge index, metrics.jsonl's row order)."""
    kind, _, index = text.rpartition(":")
    try:
        return (kind or None), int(index)
    except ValueError:
        raise UserError(f"--edge {text!r}: give an edge index, e.g. 3 or normal:3 (rows of alpha in metrics.jsonl)") from None


def alpha_figure(groups: list[Group], edge: str | None = None) -> Figure | None:
    """One panel per op (the union of the runs' ops) with its weight on one edge of the first cell
    type; runs of another space (a different edge count) are left out of this figure."""
    groups, kind, edges = _alpha_compatible(groups)
    if edge is not None:
        chosen_kind, index = parse_edge(edge)
        kind = chosen_kind or kind
        if any(kind not in r.kinds for g in groups for r in g.runs):
            raise UserError(f"--edge {edge}: the runs have no cell type {kind!r} "
                            f"(they have {', '.join(groups[0].runs[0].kinds)})")
        edges = groups[0].runs[0].alpha(kind).shape[1]
        if not 0 <= index < edges:
            raise UserError(f"--edge {edge}: the {kind} cell has edges 0..{edges - 1}")
        how = "chosen"
    else:
        index, how = most_changed_edge(groups, kind), "the edge whose weights changed most"

    def weight(op):
        def value(data, record):
            return record["alpha"][kind][index][data.ops.index(op)] if op in data.ops else None
        return value

    ops = list(dict.fromkeys(op for g in groups for r in g.runs for op in r.ops))
    counts = {len(r.ops) for g in groups for r in g.runs}
    label = edge_labels(groups[0].runs[0], kind, edges)[index]
    return _panels_figure(groups, [(op, "weight", weight(op)) for op in ops],
                          f"Weight of each op on edge {label} of the {'' if kind == 'cell' else kind + ' '}cell "
                          f"(alpha row {index}: {how}; "
                          f"dotted: uniform 1/K)", sharey=True,
                          reference=1.0 / counts.pop() if len(counts) == 1 else None)


# --- all of them ---------------------------------------------------------------------------------

def overlay_figures(groups: list[Group], edge: str | None = None) -> dict[str, Figure]:
    """Every overlay figure that has data, by file stem, in reading order."""
    if not groups or not any(g.runs for g in groups):
        raise UserError("nothing to overlay: no finished epoch in any run")
    groups = [Group(g.label, g.runs, g.color or GROUP_COLORS[i % len(GROUP_COLORS)])
              for i, g in enumerate(groups) if g.runs]
    makers = {"overlay_skips": skips_figure, "overlay_alpha": lambda gs: alpha_figure(gs, edge),
              "overlay_accuracy": accuracy_figure, "overlay_hessian": hessian_figure_of}
    figures = {}
    for stem, make in makers.items():
        fig = make(groups)
        if fig is not None:
            figures[stem] = fig
    return figures


def write_overlays(groups: list[Group], out_dir: str | Path, edge: str | None = None) -> list[Path]:
    """Write the overlay figures as PNG and SVG into ``out_dir``; return the PNGs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = []
    for stem, fig in overlay_figures(groups, edge).items():
        pngs += [p for p in save_figure(fig, out_dir / stem) if p.suffix == ".png"]
    return pngs

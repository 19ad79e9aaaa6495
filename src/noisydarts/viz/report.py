"""A report of one or more search runs, or of one or more training runs: ``report.md`` and a
self-contained ``report.html``.

The report holds, per run, the config, the final genotype, the plots of :mod:`noisydarts.viz.plots`,
the per-epoch metrics table and, for NAS-Bench-201 runs, the benchmark accuracies. Several runs
are compared in a summary table (one column per run) and overlaid in one set of figures
(:mod:`noisydarts.viz.overlay`: skip counts, one edge's weights, accuracies, the Hessian monitor,
one line per run), followed by each run's own section at full width.
The HTML inlines every image as a base64 PNG data URI and its CSS in a ``<style>`` element: it
has no external reference and can be mailed or archived as one file.

A training run's report (:mod:`noisydarts.viz.curves`) holds the same parts in a training run's
terms: the architecture, the final test accuracy and the epoch ``best.pt`` keeps (``selection``),
the loss, accuracy and learning-rate curves, the per-epoch metrics and the config; several
training runs are overlaid in ``overlay_curves`` (test accuracy, losses, one line per run). A
search run and a training run answer different questions (which architecture; how well it
trains), so one report takes runs of one kind: mixing them is refused in one line.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import yaml

from ..errors import UserError
from .curves import CAPTIONS as CURVE_CAPTIONS
from .curves import TrainRunData, overlay_curves_figure
from .overlay import CAPTIONS as OVERLAY_CAPTIONS
from .overlay import Group, write_overlays
from .plots import NB201_ACCURACIES, RunData, save_figure
from .run import load_run, plot_run, up_to_date_plots
from ..runtime.runs import atomic_write_text

#: Metrics-table columns in this order first, then any other numeric key of the records.
COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "test_top5",
           "holdout_loss", "holdout_acc", "lr", "epoch_time",
           "skip_normal", "skip_reduce", "skip_count", "nb201_index", *NB201_ACCURACIES)
PLOT_CAPTIONS = {
    "alpha": "Architecture weights of each op on each edge over the epochs (NoisyDARTS Fig. 1 style).",
    "dominant_ops": "How many edges each op wins (largest weight) at each epoch (NoisyDARTS Fig. 4 style).",
    "cells": "The derived cell(s) of the final genotype.",
    "nb201_accuracy": "NAS-Bench-201 test accuracy of the architecture derived after each epoch.",
    "hessian": "Dominant eigenvalue of the architecture Hessian (the Hessian monitor, RobustDARTS' collapse indicator).",
}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em} h2{font-size:1.25em;border-bottom:1px solid #ccc} h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.runs{display:grid;gap:1.5em;overflow-x:auto} .run{min-width:420px}
details.run>summary{cursor:pointer;font-size:1.15em;font-weight:600;margin:.6em 0}
img{max-width:100%;height:auto;border:1px solid #eee}
pre,code{font-size:.8em;background:#f7f7f7} pre{padding:.5em;white-space:pre-wrap;word-break:break-all}
figcaption{font-size:.85em;color:#555} .note{color:#a33}
"""


# --- the numbers ---------------------------------------------------------------------------------

def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.2e}" if value and abs(value) < 1e-2 else f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def metric_columns(records: list[dict]) -> list[str]:
    keys = {k for r in records for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return [c for c in COLUMNS if c in keys] + sorted(keys - set(COLUMNS))


def summary(data: RunData) -> dict[str, str]:
    """One column of the comparison table."""
    cfg, last = data.config, data.records[-1]
    noise = cfg.get("noise", {})
    stopped = last.get("stopped") if isinstance(last.get("stopped"), dict) else None
    status = "finished" if data.finished else "interrupted"
    if stopped:
        status = f"stopped early ({stopped.get('rule')}) after epoch {stopped.get('epoch')}"
    rows = {
        "run": data.run_dir.name,
        "status": status,
        "epochs": f"{len(data.records)}/{data.epochs_planned}",
        "space": data.space,
        "estimator": str(cfg.get("estimator", {}).get("name", "")),
        "noise": f"{noise.get('distribution', '')} \u03bb={noise.get('lambda')}" if noise.get("enabled") else "off",
        "edge weighting": str(cfg.get("edge", {}).get("weighting", "")),
        "seed": _fmt(cfg.get("seed")),
    }
    for key in ("train_acc", "val_acc", "val_loss", "skip_normal", "skip_reduce", "skip_count", "ops_normal", "ops_reduce",
                *NB201_ACCURACIES):
        if key in last:
            rows[f"final {key}"] = _fmt(last[key])
    eigs = [r["hessian_eig"] for r in data.records if "hessian_eig" in r]
    if eigs:
        rows["last hessian_eig"] = _fmt(eigs[-1])
    rows["total time (s)"] = _fmt(round(sum(float(r.get("epoch_time", 0)) for r in data.records), 1))
    return rows


def _plots(data: RunData | TrainRunData) -> list[Path]:
    """The run's PNGs: those in ``plots/`` when newer than the metrics, else drawn now."""
    return up_to_date_plots(data) or [p for p in plot_run(data.run_dir) if p.suffix == ".png"]


def _caption(path: Path, training: bool = False) -> str:
    if training or path.stem == "overlay_curves":
        return CURVE_CAPTIONS[path.stem] + (", one line per run." if path.stem.startswith("overlay_") else "")
    if path.stem in OVERLAY_CAPTIONS:
        return OVERLAY_CAPTIONS[path.stem] + ", one line per run."
    return PLOT_CAPTIONS["alpha" if path.stem.startswith("alpha_") else path.stem]


# --- markdown --------------------------------------------------------------------------------------

def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_rows(summaries: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The summary table: a column per run, a row per key (the first key, ``run``, is the header)."""
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    return ["", *[s["run"] for s in summaries]], [[k, *[s.get(k, "") for s in summaries]] for k in keys[1:]]


def _markdown_head(kind: str, summaries: list[dict], out: Path, overlays: list[Path], training: bool) -> list[str]:
    """Title, summary table and overlays of a search or training report (markdown)."""
    parts = [f"# noisydarts {kind} report", "", "## Summary", "", _md_table(*_summary_rows(summaries)), ""]
    if overlays:
        parts += ["## The runs overlaid", ""]
        for png in overlays:
            parts += [f"![{png.stem}]({Path(os.path.relpath(png, out)).as_posix()})", "", f"*{_caption(png, training)}*", ""]
    return parts


def _markdown(runs: list[tuple[RunData, list[Path]]], out: Path, overlays: list[Path]) -> str:
    parts = _markdown_head("search", [summary(d) for d, _ in runs], out, overlays, training=False)
    for data, pngs in runs:
        parts += [f"## {data.title}", "", f"Run directory: `{data.run_dir}`", "",
                  "### Final genotype" if data.finished else "### Genotype after the last epoch", "",
                  "```", str(data.genotype_text), "```", ""]
        if data.has_benchmark_accuracy:
            last = data.records[-1]
            parts += ["NAS-Bench-201 test accuracy: " + ", ".join(
                f"{name} {_fmt(last.get(key))}%" for key, name in NB201_ACCURACIES.items()), ""]
        parts += ["### Plots", ""]
        for png in pngs:
            rel = Path(os.path.relpath(png, out)).as_posix()
            parts += [f"![{png.stem}]({rel})", "", f"*{_caption(png)}*", ""]
        cols = metric_columns(data.records)
        parts += ["### Metrics per epoch", "", _md_table(cols, [[_fmt(r.get(c)) for c in cols] for r in data.records]), "",
                  "### Config", "", "```yaml", yaml.safe_dump(data.config, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(parts)


# --- html ----------------------------------------------------------------------------------------

def _html_table(header: list[str], rows: list[list[str]], left_cols: int = 0) -> str:
    e = html.escape
    head = "".join(f'<th class="l">{e(h)}</th>' if i < left_cols else f"<th>{e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="l">{e(c)}</td>' if i < left_cols else f"<td>{e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _html_head(kind: str, summaries: list[dict], overlays: list[Path], training: bool) -> list[str]:
    """Title, summary table and overlays of a search or training report (HTML)."""
    body = [f"<h1>noisydarts {kind} report</h1>", "<h2>Summary</h2>",
            _html_table(*_summary_rows(summaries), left_cols=len(summaries) + 1)]
    if overlays:
        body += ["<h2>The runs overlaid</h2>", *_figures(overlays, training), "<h2>Each run</h2>"]
    return body


def _html_run(data, several: bool, middle: list[str]) -> str:
    """One run's section of a report: its title, directory, ``middle`` (what its kind shows), the
    metrics per epoch and the config; folded (details) when the report has several runs."""
    e = html.escape
    head = (f'<details class="run"><summary>{e(data.title)}</summary>' if several
            else f'<section class="run"><h2>{e(data.title)}</h2>')
    cols = metric_columns(data.records)
    return "\n".join([head, f"<p>Run directory: <code>{e(str(data.run_dir))}</code></p>", *middle,
                      "<h3>Metrics per epoch</h3>",
                      _html_table(cols, [[_fmt(r.get(c)) for c in cols] for r in data.records]),
                      "<details><summary>Config</summary>",
                      f"<pre>{e(yaml.safe_dump(data.config, sort_keys=False))}</pre></details>",
                      "</details>" if several else "</section>"])


def _html_page(title: str, body: list[str], columns: list[str]) -> str:
    body = [*body, '<div class="runs">', *columns, "</div>"]  # the runs one below the other, at full width
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _figures(pngs: list[Path], training: bool) -> list[str]:
    e = html.escape
    return [f'<figure><img src="{_data_uri(png)}" alt="{e(png.stem)}"><figcaption>{e(_caption(png, training))}'
            "</figcaption></figure>" for png in pngs]


def _html(runs: list[tuple[RunData, list[Path]]], overlays: list[Path]) -> str:
    e = html.escape
    body = _html_head("search", [summary(d) for d, _ in runs], overlays, training=False)
    columns = []
    for data, pngs in runs:
        middle = [f"<h3>{'Final genotype' if data.finished else 'Genotype after the last epoch'}</h3>",
                  f"<pre>{e(str(data.genotype_text))}</pre>"]
        if data.has_benchmark_accuracy:
            last = data.records[-1]
            middle.append("<h3>NAS-Bench-201 test accuracy</h3>" + _html_table(
                list(NB201_ACCURACIES.values()), [[_fmt(last.get(k)) + "%" for k in NB201_ACCURACIES]]))
        columns.append(_html_run(data, len(runs) > 1, [*middle, "<h3>Plots</h3>", *_figures(pngs, False)]))
    return _html_page("noisydarts report", body, columns)


# --- a training run's report --------------------------------------------------------------------

def train_summary(data: TrainRunData) -> dict[str, str]:
    """One column of a training report's comparison table."""
    cfg, last = data.config, data.records[-1]
    network = cfg.get("network") if isinstance(cfg.get("network"), dict) else {}
    data_cfg = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    rows = {
        "run": data.run_dir.name,
        "status": "finished" if data.finished else "interrupted",
        "epochs": f"{len(data.records)}/{data.epochs_planned}",
        "space": data.space,
        "family": str(cfg.get("family", "")),
        "network": ", ".join(f"{k}={_fmt(v)}" for k, v in network.items()),
        "data": str(data_cfg.get("name", "")),
        "seed": _fmt(cfg.get("seed")),
    }
    for key in ("train_acc", "test_acc", "test_top5", "holdout_acc", "test_loss"):
        if key in last:
            rows[f"final {key}"] = _fmt(last[key])
    rows["best.pt"] = _best_line(data)
    rows["total time (s)"] = _fmt(round(sum(float(r.get("epoch_time", 0)) for r in data.records), 1))
    return rows


def _best_line(data: TrainRunData) -> str:
    """What best.pt holds: the selected epoch and its accuracy, or why there is none."""
    best = data.best
    if best is None:
        return f"none (selection: {data.config.get('selection', 'none')})"
    split = "holdout" if data.selected_on == "holdout_acc" else "test"
    return f"epoch {best[0]}: {best[1]:.2f} % on the {split} split (selection: {data.config.get('selection')})"


def _result_lines(data: TrainRunData) -> list[str]:
    last = data.records[-1]
    final = "Final" if data.finished else f"After epoch {data.epochs[-1]}"
    top5 = f", top-5 {_fmt(last['test_top5'])} %" if "test_top5" in last and data.has_top5 else ""
    return [f"{final}: test accuracy {_fmt(last['test_acc'])} %{top5}", f"best.pt: {_best_line(data)}"]


def _train_markdown(runs: list[tuple[TrainRunData, list[Path]]], out: Path, overlays: list[Path]) -> str:
    parts = _markdown_head("training", [train_summary(d) for d, _ in runs], out, overlays, training=True)
    for data, pngs in runs:
        parts += [f"## {data.title}", "", f"Run directory: `{data.run_dir}`", "",
                  "### Result", "", *[f"- {line}" for line in _result_lines(data)], "",
                  "### Architecture", "", "```", str(data.genotype_text), "```", "", "### Curves", ""]
        for png in pngs:
            rel = Path(os.path.relpath(png, out)).as_posix()
            parts += [f"![{png.stem}]({rel})", "", f"*{_caption(png, True)}*", ""]
        cols = metric_columns(data.records)
        parts += ["### Metrics per epoch", "", _md_table(cols, [[_fmt(r.get(c)) for c in cols] for r in data.records]), "",
                  "### Config", "", "```yaml", yaml.safe_dump(data.config, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(parts)


def _train_html(runs: list[tuple[TrainRunData, list[Path]]], overlays: list[Path]) -> str:
    e = html.escape
    body = _html_head("training", [train_summary(d) for d, _ in runs], overlays, training=True)
    columns = [_html_run(data, len(runs) > 1, [
        "<h3>Result</h3>", "<ul>" + "".join(f"<li>{e(line)}</li>" for line in _result_lines(data)) + "</ul>",
        "<h3>Architecture</h3>", f"<pre>{e(str(data.genotype_text))}</pre>", "<h3>Curves</h3>", *_figures(pngs, True)])
        for data, pngs in runs]
    return _html_page("noisydarts training report", body, columns)


def run_labels(datas: list[RunData | TrainRunData]) -> list[str]:
    """Run directory names, with their parent's name where two runs share a name."""
    names = [d.run_dir.name for d in datas]
    return [f"{d.run_dir.parent.name}/{n}" if names.count(n) > 1 else n for d, n in zip(datas, names)]


def write_report(run_dirs, out: str | Path | None = None, edge: str | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for the runs (search runs, or training runs) into
    ``out`` (default: the first run's directory) and return their paths. The plots are (re)drawn
    into each run's ``plots/`` unless they are newer than its metrics; with several runs the
    overlay figures go into ``OUT/overlay/`` (``edge``: for search runs, the edge whose weights
    they show, e.g. ``"normal:3"``; default the one that changed most)."""
    run_dirs = [Path(r) for r in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    if not run_dirs:
        raise UserError("no run directory given: name at least one search or training run")
    datas = [load_run(r) for r in run_dirs]
    training = [isinstance(d, TrainRunData) for d in datas]
    if any(training) and not all(training):
        search_dir, train_dir = (next(d.run_dir for d in datas if isinstance(d, TrainRunData) is t) for t in (False, True))
        raise UserError(f"{train_dir} is a training run and {search_dir} a search run: report search runs and "
                        "training runs separately")
    if all(training) and edge is not None:
        raise UserError("--edge picks an edge of a search's architecture weights: training runs have none; drop --edge")
    runs = [(data, _plots(data)) for data in datas]
    out = Path(out) if out is not None else run_dirs[0]
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a directory for report.md and report.html")
    out.mkdir(parents=True, exist_ok=True)
    overlays = []
    if len(runs) > 1 and all(training):
        fig = overlay_curves_figure(datas, run_labels(datas))
        (out / "overlay").mkdir(exist_ok=True)
        overlays = [p for p in save_figure(fig, out / "overlay" / "overlay_curves") if p.suffix == ".png"]
    elif len(runs) > 1:
        overlays = write_overlays([Group(label, [d]) for label, d in zip(run_labels(datas), datas)], out / "overlay", edge)
    md_path, html_path = out / "report.md", out / "report.html"
    if all(training):
        atomic_write_text(md_path, _train_markdown(runs, out, overlays))
        atomic_write_text(html_path, _train_html(runs, overlays))
    else:
        atomic_write_text(md_path, _markdown(runs, out, overlays))
        atomic_write_text(html_path, _html(runs, overlays))
    return md_path, html_path

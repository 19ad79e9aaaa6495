"""Plots, report and their CLI, on small synthetic runs (DARTS and NB201, finished, interrupted, 1 epoch)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from noisydarts import cli
from noisydarts.errors import UserError
from noisydarts.spaces.darts import Genotype
from noisydarts.nn.ops import NOISYDARTS_OPS, OPS
from noisydarts.viz.plots import OP_COLORS, dominant_counts, load_run_data
from noisydarts.viz.run import plot_run
from noisydarts.viz.report import write_report

NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _alpha(rng, epoch, edges, ops, favourite):
    """Weights drifting towards ``favourite`` as epochs pass (collapse-like, for the pictures)."""
    logits = 0.3 * rng.standard_normal((edges, ops))
    logits[:, favourite] += 0.15 * epoch
    return [[round(float(v), 6) for v in row] for row in _softmax(logits)]


SMALL_GENOTYPE = Genotype(normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 1), ("skip_connect", 2)],
                          normal_concat=[2, 3],
                          reduce=[("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0)],
                          reduce_concat=[2, 3])


def make_darts_run(path: Path, epochs: int, planned: int | None = None, finished: bool = True, nodes: int = 4) -> Path:
    """A DARTS run; ``nodes=2`` (5 edges per cell) keeps the pictures cheap to draw."""
    rng = np.random.default_rng(0)
    ops = list(NOISYDARTS_OPS)
    path.mkdir(parents=True)
    cfg = {"epochs": planned or epochs, "seed": 0, "space": {"name": "darts", "nodes": nodes, "ops": ops},
           "noise": {"enabled": True, "lambda": 0.2}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    genotype = Genotype(normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_5x5", 1), ("dil_conv_3x3", 2),
                                ("skip_connect", 0), ("max_pool_3x3", 3), ("sep_conv_3x3", 4), ("avg_pool_3x3", 1)],
                        normal_concat=[2, 3, 4, 5],
                        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                                ("dil_conv_5x5", 3), ("skip_connect", 2), ("avg_pool_3x3", 0), ("sep_conv_5x5", 4)],
                        reduce_concat=[2, 3, 4, 5]) if nodes == 4 else SMALL_GENOTYPE
    edges = nodes * (nodes + 3) // 2
    lines = []
    for e in range(1, epochs + 1):
        lines.append({"epoch": e, "train_loss": 2.3 - 0.1 * e, "train_acc": 10.0 + 3 * e, "lr": 0.025, "val_loss": 2.3,
                      "val_acc": 11.0 + 2 * e, "epoch_time": 1.5,
                      "alpha": {"normal": _alpha(rng, e, edges, 7, 2), "reduce": _alpha(rng, e, edges, 7, 0)},
                      "genotype": str(genotype), "skip_normal": 2, "skip_reduce": 2})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if finished:
        (path / "genotype.json").write_text(json.dumps({"space": "darts", "genotype": genotype.to_dict(),
                                                        "text": str(genotype)}))
    return path


def make_nb201_run(path: Path, epochs: int, finished: bool = True) -> Path:
    rng = np.random.default_rng(1)
    path.mkdir(parents=True)
    cfg = {"epochs": epochs, "space": {"name": "nb201", "ops": NB201_OPS, "channels": 16}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    archs = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
             "|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|"]
    lines = []
    for e in range(1, epochs + 1):
        arch = archs[0] if e <= epochs // 2 + 1 else archs[1]
        lines.append({"epoch": e, "train_loss": 2.0, "train_acc": 30.0, "lr": 0.025, "val_loss": 2.1, "val_acc": 28.0,
                      "epoch_time": 0.7, "alpha": {"cell": _alpha(rng, e, 6, 5, 1)}, "genotype": arch,
                      "nb201_index": 100 + e, "cifar10_test": 93.0 - e, "cifar100_test": 70.0 - 2 * e,
                      "imagenet16_test": 44.0 - 3 * e, "skip_count": arch.count("skip_connect")})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if finished:
        (path / "genotype.json").write_text(json.dumps({"space": "nb201", "genotype": lines[-1]["genotype"],
                                                        "text": lines[-1]["genotype"]}))
    return path


def _check_png(path: Path, min_px: int = 300):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    h, w = mpimg.imread(path).shape[:2]
    assert w > min_px and h > min_px, (path.name, w, h)
    return w, h


def _check_svg(path: Path):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {"darts": make_darts_run(base / "darts", 6),
            "darts_interrupted": make_darts_run(base / "darts_int", 3, planned=50, finished=False, nodes=2),
            "darts_one": make_darts_run(base / "darts_one", 1, nodes=2),
            "nb201": make_nb201_run(base / "nb201", 5),
            "nb201_one": make_nb201_run(base / "nb201_one", 1, finished=False)}


EXPECTED = {
    "darts": {"alpha_normal", "alpha_reduce", "dominant_ops", "cells"},
    "nb201": {"alpha_cell", "dominant_ops", "cells", "nb201_accuracy"},
}


@pytest.mark.parametrize("name", ["darts", "darts_interrupted", "darts_one", "nb201", "nb201_one"])
def test_every_plot_is_a_valid_png_and_svg(runs, name):
    paths = plot_run(runs[name])
    stems = EXPECTED[name.split("_")[0]]
    assert {p.name for p in paths} == {f"{s}.{fmt}" for s in stems for fmt in ("png", "svg")}
    for p in paths:
        assert p.parent == runs[name] / "plots"
        _check_png(p) if p.suffix == ".png" else _check_svg(p)
    assert not [p for p in (runs[name] / "plots").iterdir() if p.name.startswith(".")]  # no temp files left


def test_alpha_grid_has_one_panel_per_edge(runs):
    from noisydarts.viz.plots import alpha_figure

    data = load_run_data(runs["darts"])
    fig = alpha_figure(data, "normal")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 14
    # every panel draws each op with its fixed colour, in space.ops order
    ops = list(NOISYDARTS_OPS)
    assert [line.get_color() for line in panels[0].lines[:len(ops)]] == [OP_COLORS[op] for op in ops]
    assert panels[0].lines[len(ops)].get_ydata()[0] == pytest.approx(1 / len(ops))  # uniform reference
    # the plotted values are the metrics' weights of that edge and op
    record = json.loads((runs["darts"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert panels[3].lines[ops.index("skip_connect")].get_ydata()[-1] == record["alpha"]["normal"][3][2]
    assert panels[0].get_title() == "edge 0 \u2190 c\u2096\u208b\u2082"
    nb = alpha_figure(load_run_data(runs["nb201"]), "cell")
    assert len([ax for ax in nb.axes if ax.get_visible()]) == 6


def test_palette_covers_every_registered_op():
    assert set(OPS) <= set(OP_COLORS)
    assert len(set(OP_COLORS.values())) == len(OP_COLORS)


def test_dominant_counts_are_argmax_counts():
    alpha = np.array([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]],
                      [[0.6, 0.4], [0.9, 0.1], [0.5, 0.5]]])  # [epochs=2, edges=3, ops=2]
    counts = dominant_counts(alpha, 2)
    np.testing.assert_array_equal(counts, [[1, 3], [2, 0]])
    assert (counts.sum(axis=0) == 3).all()


def test_interrupted_run_uses_last_epoch_genotype(runs):
    data = load_run_data(runs["darts_interrupted"])
    assert not data.finished and "interrupted after 3/50 epochs" in data.title
    assert data.genotype_text.startswith("Genotype(")


def test_bad_run_dirs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        load_run_data(tmp_path / "missing")
    with pytest.raises(UserError, match="no metrics.jsonl"):
        load_run_data(tmp_path)
    (tmp_path / "config.yaml").write_text("epochs: 3\n")
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="no finished epoch"):
        load_run_data(tmp_path)


def test_mismatched_ops_are_user_errors(tmp_path):
    run = make_nb201_run(tmp_path / "r", 2)
    (run / "config.yaml").write_text(yaml.safe_dump({"epochs": 2, "space": {"name": "nb201", "ops": NB201_OPS[:3]}}))
    with pytest.raises(UserError, match="do not belong together"):
        load_run_data(run)


REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", re.I)


def test_report_is_self_contained_and_compares_runs(runs, tmp_path):
    md, html = write_report([runs["darts"], runs["nb201"], runs["darts_interrupted"]], out=tmp_path / "cmp")
    text = html.read_text()
    refs = REFERENCE.findall(text)
    assert refs and all(ref.startswith(("data:", "#")) for ref in refs)
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text
    # all plots of the three runs, and the overlays (skips, one edge's alpha, accuracy), inlined as PNG data URIs
    inlined = re.findall(r'src="data:image/png;base64,', text)
    assert len(inlined) == 4 + 4 + 4 + 3
    assert sorted(p.name for p in (tmp_path / "cmp" / "overlay").glob("*.png")) == [
        "overlay_accuracy.png", "overlay_alpha.png", "overlay_skips.png"]
    assert text.count('<details class="run">') == 3  # each run at full width, one below the other
    # summary table: one column per run, with the NB201 accuracy of the nb201 run
    for run in ("darts", "nb201", "darts_int"):
        assert f">{run}<" in text
    assert "88.00" in text  # cifar10_test of the nb201 run's last epoch (93 - 5)
    md_text = md.read_text()
    assert md_text.count("| epoch |") == 3  # a metrics table per run
    assert "interrupted after 3/50 epochs" in md_text
    for ref in re.findall(r"\]\(([^)]+\.png)\)", md_text):  # markdown image links resolve from the report
        assert (md.parent / ref).is_file(), ref


def test_report_defaults_to_first_run_dir(runs):
    md, html = write_report([runs["darts_one"]])
    assert md == runs["darts_one"] / "report.md" and html.parent == runs["darts_one"]
    assert "| 1 |" in md.read_text()


def test_cli_plot_and_report(runs, tmp_path, capsys):
    assert cli.main(["plot", str(runs["nb201"])]) == 0
    assert "nb201_accuracy.png" in capsys.readouterr().out
    assert cli.main(["report", str(runs["darts"]), str(runs["nb201"]), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").is_file()
    assert cli.main(["plot", str(tmp_path / "nothing")]) == 2
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("noisydarts: error:") == 2 and "Traceback" not in err


def test_search_flags_set_plots_and_tensorboard():
    args = cli.build_parser().parse_args(["search", "--no-plots", "--set", "epochs=1"])
    assert cli.search_config(args)["plots"] is False
    args = cli.build_parser().parse_args(["search"])
    assert cli.search_config(args)["plots"] is True and cli.search_config(args)["tensorboard"] is False


def test_tensorboard_missing_is_a_clear_user_error(no_tensorboard):
    from noisydarts.search.callbacks import default_callbacks

    with pytest.raises(UserError, match="pip install tensorboard"):
        default_callbacks({"plots": False, "tensorboard": True})
    assert default_callbacks({"plots": False, "tensorboard": False}) == []


def test_plot_callback_warns_instead_of_failing(tmp_path):
    from noisydarts.search.callbacks import PlotCallback
    from noisydarts.search import SearchResult

    with pytest.warns(UserWarning, match="plots"):
        PlotCallback().on_end(SearchResult(genotype=None, run_dir=tmp_path))


def test_tensorboard_callback_logs_the_epoch_scalars(monkeypatch, tmp_path):
    import sys
    import types

    from noisydarts.search.callbacks import TensorBoardCallback

    written = []

    class FakeWriter:
        def __init__(self, log_dir):
            written.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            written.append(("closed",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    cb = TensorBoardCallback()
    record = {"epoch": 3, "train_loss": 1.5, "val_acc": 40.0, "lr": 0.01, "skip_normal": 2, "cifar10_test": 91.2,
              "nb201_index": 7, "alpha": {"normal": [[0.5, 0.5]]}, "genotype": "G", "flag": True}
    cb.on_epoch(record, tmp_path)
    cb.on_end(None)
    assert written[0] == ("dir", str(tmp_path / "tensorboard"))
    assert set(written[1:-1]) == {("loss/train", 1.5, 3), ("accuracy/val", 40.0, 3), ("lr", 0.01, 3),
                                  ("skip/normal", 2.0, 3), ("nb201/cifar10_test", 91.2, 3)}
    assert written[-1] == ("closed",)


def test_search_adds_the_config_callbacks(monkeypatch, tmp_path):
    import importlib

    from noisydarts.search.callbacks import PlotCallback

    search_mod = importlib.import_module("noisydarts.search.api")

    seen = {}

    class FakeSearcher:
        def __init__(self, cfg, run_dir, progress):
            pass

        def run(self, stop_after, callbacks):
            seen["callbacks"] = callbacks

    monkeypatch.setattr(search_mod, "Searcher", FakeSearcher)
    mine = object()
    search_mod.search({"epochs": 1}, out=tmp_path / "a", callbacks=[mine])
    assert [type(c) for c in seen["callbacks"][:-1]] == [PlotCallback] and seen["callbacks"][-1] is mine
    search_mod.search({"epochs": 1, "plots": False}, out=tmp_path / "b", callbacks=[mine])
    assert list(seen["callbacks"]) == [mine]

"""Overlay figures of several runs: the numbers drawn, the edge chosen, the report and CLI around them."""

import json

import numpy as np
import pytest

from noisydarts import cli
from noisydarts.errors import UserError
from noisydarts.viz.overlay import Group, _series, alpha_figure, most_changed_edge, overlay_figures, skips_figure
from noisydarts.viz.plots import load_run_data
from test_plots import make_darts_run, make_nb201_run


def _rewrite(run, **per_epoch):
    """Replace metrics.jsonl values: key -> list of per-epoch values (its length cuts the run)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    n = min(len(v) for v in per_epoch.values())
    records = records[:n]
    for key, values in per_epoch.items():
        for r, v in zip(records, values):
            r[key] = v
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return load_run_data(run)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    base = tmp_path_factory.mktemp("ov")
    a = _rewrite(make_darts_run(base / "a", 3, nodes=2), skip_normal=[0, 1, 2], val_acc=[10.0, 20.0, 30.0])
    b = _rewrite(make_darts_run(base / "b", 3, nodes=2), skip_normal=[2, 3], val_acc=[12.0, 22.0])  # a shorter run
    return a, b


def test_series_is_mean_and_min_max_over_the_runs_that_reached_each_epoch(two_seeds):
    epochs, mean, low, high = _series(list(two_seeds), lambda data, r: r.get("skip_normal"))
    np.testing.assert_array_equal(epochs, [1, 2, 3])
    np.testing.assert_allclose(mean, [1, 2, 2])
    np.testing.assert_allclose(low, [0, 1, 2])
    np.testing.assert_allclose(high, [2, 3, 2])


def test_skips_figure_draws_the_mean_with_a_band(two_seeds):
    fig = skips_figure([Group("method", list(two_seeds))])
    ax = fig.axes[0]
    assert ax.get_title() == "normal cell"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1, 2, 2])
    assert len(ax.collections) == 1  # the min-max band
    assert "min-max over seeds" in fig._suptitle.get_text()
    single = skips_figure([Group("a", [two_seeds[0]]), Group("b", [two_seeds[1]])])
    assert not single.axes[0].collections and "seeds" not in single._suptitle.get_text()  # one run a line: no band


def test_most_changed_edge_and_a_chosen_edge(tmp_path):
    run = make_darts_run(tmp_path / "r", 3, nodes=2)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    flat = [[1 / 7] * 7 for _ in range(5)]
    for e, r in enumerate(records):
        r["alpha"]["normal"] = [row[:] for row in flat]
        r["alpha"]["normal"][3] = [1 / 7 - 0.01 * e] * 6 + [1 / 7 + 0.06 * e]  # edge 3 drifts to dil_conv_5x5
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    group = [Group("r", [load_run_data(run)])]
    assert most_changed_edge(group, "normal") == 3
    fig = alpha_figure(group)
    assert "alpha row 3" in fig._suptitle.get_text()
    panel = [ax for ax in fig.axes if ax.get_title() == "dil_conv_5x5"][0]
    np.testing.assert_allclose(panel.lines[0].get_ydata(), [1 / 7, 1 / 7 + 0.06, 1 / 7 + 0.12])
    chosen = alpha_figure(group, edge="reduce:1")
    assert "reduce cell (alpha row 1: chosen" in chosen._suptitle.get_text()
    with pytest.raises(UserError, match="edges 0..4"):
        alpha_figure(group, edge="normal:9")
    with pytest.raises(UserError, match="no cell type 'cell'"):
        alpha_figure(group, edge="cell:0")
    with pytest.raises(UserError, match="give an edge index"):
        alpha_figure(group, edge="normal:x")


def test_mixed_spaces_overlay_what_they_share(tmp_path):
    darts = load_run_data(make_darts_run(tmp_path / "d", 3, nodes=2))
    nb = load_run_data(make_nb201_run(tmp_path / "n", 4))
    figures = overlay_figures([Group("d", [darts]), Group("n", [nb])])
    assert list(figures) == ["overlay_skips", "overlay_alpha", "overlay_accuracy"]
    titles = [ax.get_title() for ax in figures["overlay_skips"].axes if ax.get_visible()]
    assert titles == ["normal cell", "reduction cell", "NAS-Bench-201 cell"]
    acc = [ax.get_title() for ax in figures["overlay_accuracy"].axes if ax.get_visible()]
    assert acc[0].startswith("search-val") and "NAS-Bench-201 CIFAR-10 test" in acc
    legend = [t.get_text() for t in figures["overlay_alpha"].legends[0].get_texts()]
    assert legend == ["d"]  # the NB201 run has other edges: left out of the edge figure


def test_cli_report_edge_flag(two_seeds, tmp_path, capsys):
    a, b = (str(d.run_dir) for d in two_seeds)
    assert cli.main(["report", a, b, "--out", str(tmp_path / "r"), "--edge", "normal:0"]) == 0
    assert (tmp_path / "r" / "overlay" / "overlay_alpha.png").is_file()
    assert cli.main(["report", a, b, "--out", str(tmp_path / "r2"), "--edge", "normal:99"]) == 2
    assert "edges 0..4" in capsys.readouterr().err

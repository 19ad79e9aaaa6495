"""Early stopping: the RobustDARTS and DARTS+ rules on hand-made metrics, and the loop honouring a stop."""

import json

import pytest
import torch

from noisydarts.methods.early_stop import DartsPlusStop, RobustDartsStop, Stop, dartsplus_rule, local_average, robustdarts_rule
from noisydarts.errors import UserError
from noisydarts.search import search

RELEASE = {"window": 5, "delta": 4, "factor": 1.3, "start_epoch": 10}  # automl/RobustDARTS defaults


def first_stop(eigenvalues, epochs=None, **kw):
    """Feed the rule one measurement at a time, as the monitor does; return (index, Stop) of the first stop."""
    epochs = epochs or list(range(1, len(eigenvalues) + 1))
    for n in range(1, len(eigenvalues) + 1):
        stop = robustdarts_rule(epochs[:n], eigenvalues[:n], **(RELEASE | kw))
        if stop is not None:
            return n, stop
    return None, None


def test_local_average_is_centred_and_truncated_at_the_start():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert local_average(values, 0, 5) == pytest.approx(2.0)        # values[0:3]
    assert local_average(values, 1, 5) == pytest.approx(2.5)        # values[0:4]
    assert local_average(values, 3, 5) == pytest.approx(4.0)        # values[1:6]


def test_robustdarts_flat_or_slowly_rising_never_stops():
    assert first_stop([1.0] * 50) == (None, None)
    assert first_stop([1.0 + 0.01 * i for i in range(50)]) == (None, None)  # 1.3x is never reached 4 steps apart


def test_robustdarts_jump_stops_when_the_window_sees_it():
    # eigenvalue 1 for epochs 1-20, 2 from epoch 21. Centre m = n-3, earlier p = n-7 (0-based):
    # n=21: 1.2 / 1.0; n=22: 1.4 / 1.0 > 1.3 -> stop after epoch 22, rollback to epoch p+1 = 16.
    n, stop = first_stop([1.0] * 20 + [2.0] * 10)
    assert n == 22 and stop.epoch == 22 and stop.rule == "robustdarts"
    assert stop.details["rollback_epoch"] == 16
    assert stop.details["ratio"] == pytest.approx(1.4)
    assert "1.40x" in stop.reason


def test_robustdarts_waits_for_start_epoch():
    # the jump (epoch 13) is seen at once, but the earlier centre must lie after epoch 10:
    # p = n-7 >= 10 (0-based) -> n = 17: windows [12..16] = 2.0 vs [8..12] = 1.2 -> ratio 1.67
    n, stop = first_stop([1.0] * 12 + [2.0] * 10)
    assert n == 17 and stop.details["rollback_epoch"] == 11
    assert stop.details["ratio"] == pytest.approx(2.0 / 1.2)
    n, stop = first_stop([1.0] * 12 + [2.0] * 10, start_epoch=0)
    assert n == 14 and stop.details["rollback_epoch"] == 8  # p = 7: [9..13] = 1.4 vs [5..9] = 1.0


def test_robustdarts_counts_measurements_not_epochs():
    """Measured every 2 epochs (the release's --report_freq_hessian 2): delta = 4 measurements = 8 epochs."""
    eig = [1.0] * 10 + [3.0] * 10
    epochs = [2 * (i + 1) for i in range(len(eig))]
    n, stop = first_stop(eig, epochs)
    assert n == 12 and stop.epoch == 24 and stop.details["rollback_epoch"] == 12


def test_robustdarts_ignores_non_positive_eigenvalues():
    assert first_stop([-1.0 - i for i in range(20)], start_epoch=0) == (None, None)


def test_dartsplus_rule():
    assert dartsplus_rule({"epoch": 3, "skip_normal": 1, "skip_reduce": 5}) is None  # only the normal cell counts
    stop = dartsplus_rule({"epoch": 4, "skip_normal": 2})
    assert stop.rule == "dartsplus" and stop.epoch == 4 and "2 skip connections in the derived normal cell" in stop.reason
    assert dartsplus_rule({"epoch": 4, "skip_count": 2}).reason.endswith("cell (>= 2)")  # NAS-Bench-201
    assert dartsplus_rule({"epoch": 4, "skip_normal": 2}, skips=3) is None
    with pytest.raises(UserError, match="dartsplus"):
        dartsplus_rule({"epoch": 1})


def _cfg():
    return {"epochs": 30, "early_stop": {"robustdarts": RELEASE | {"enabled": True}, "dartsplus": {"enabled": True, "skips": 2}}}


def test_callbacks_never_stop_at_the_last_epoch_and_point_to_the_rollback_genotype():
    rd, dp = RobustDartsStop(_cfg()), DartsPlusStop(_cfg())
    history = [{"epoch": e, "hessian_eig": 1.0 if e <= 20 else 2.0, "genotype": f"g{e}", "skip_normal": 0}
               for e in range(1, 23)]
    stop = rd.check_stop(history)
    assert stop.epoch == 22 and stop.details["rollback_genotype"] == "g16"
    assert rd.check_stop(history[:-1] + [{"epoch": 22, "genotype": "g22"}]) is None  # no new measurement
    last = [{"epoch": 30, "skip_normal": 4}]
    assert dp.check_stop(last) is None and dp.check_stop([{"epoch": 29, "skip_normal": 4}]) is not None


class StopAt:
    def __init__(self, epoch):
        self.epoch = epoch

    def check_stop(self, history):
        if history[-1]["epoch"] == self.epoch:
            return Stop("test", self.epoch, "asked to stop", {"why": 42})
        return None


def test_the_loop_honours_a_stop_and_records_it(tiny_config, tmp_path):
    out = tmp_path / "run"
    result = search(tiny_config | {"epochs": 4}, out=out, progress=False, callbacks=[StopAt(2)])
    assert result.stopped == {"rule": "test", "epoch": 2, "reason": "asked to stop", "why": 42}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines[-1]["stopped"]["rule"] == "test" and "stopped" not in lines[0]
    payload = json.loads((out / "genotype.json").read_text())
    assert payload["stopped"]["reason"] == "asked to stop" and payload["epochs"] == 2
    assert payload["text"] == lines[-1]["genotype"] == str(result.genotype)  # the stop epoch's architecture
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 2 and state["stopped"]["rule"] == "test"
    # resuming a stopped run trains no further
    again = search(resume=out, progress=False)
    assert len(again.metrics) == 2 and again.stopped["rule"] == "test" and again.genotype == result.genotype


def test_rules_switched_on_by_config_stop_a_real_search(tiny_config, tmp_path):
    # DARTS+ with 1 skip: stops after the first epoch whose normal cell has a skip connection
    cfg = tiny_config | {"epochs": 4, "early_stop": {"dartsplus": {"enabled": True, "skips": 1}}}
    result = search(cfg, out=tmp_path / "dp", progress=False)
    with_skip = [m["epoch"] for m in result.metrics if m["skip_normal"] >= 1]
    if with_skip and with_skip[0] < 4:
        assert result.stopped["rule"] == "dartsplus" and len(result.metrics) == with_skip[0]
    else:
        assert result.stopped is None and len(result.metrics) == 4
    # RobustDARTS with a window of 1 and any growth: stops after the second measurement
    cfg = tiny_config | {"epochs": 4, "monitor": {"hessian_every": 1, "hessian_iterations": 4},
                         "early_stop": {"robustdarts": {"enabled": True, "window": 1, "delta": 1, "factor": 1e-6,
                                                        "start_epoch": 0}}}
    result = search(cfg, out=tmp_path / "rd", progress=False)
    assert result.stopped["rule"] == "robustdarts" and len(result.metrics) == 2
    assert result.stopped["rollback_epoch"] == 1 and result.stopped["rollback_genotype"] == result.metrics[0]["genotype"]

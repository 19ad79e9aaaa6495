"""The callback contract (noisydarts.runtime.callbacks): no-op base hooks, old duck-typed
callbacks, which callbacks run on which rank, and stage hooks that change the supernet between
epochs (optimizer state carried over, exact resume)."""

from __future__ import annotations

import copy

import pytest
import torch

from noisydarts import UserError, resolve_config
from noisydarts.methods.early_stop import DartsPlusStop, RobustDartsStop, Stop
from noisydarts.methods.hessian import HessianMonitor
from noisydarts.nn.mixed import MixedEdge
from noisydarts.nn.ops import Zero
from noisydarts.runtime.callbacks import Callback, DuckCallback, as_callback, for_rank
from noisydarts.search import Searcher, search
from noisydarts.search.callbacks import (
    PlotCallback,
    TensorBoardCallback,
    default_callbacks,
)


def test_the_base_hooks_do_nothing():
    cb = Callback()
    assert cb.on_start(None) is None and cb.on_epoch_start(None, 0) is None
    record = {"epoch": 1}
    assert cb.on_record(None, record) is None and record == {"epoch": 1}
    assert cb.check_stop([record]) is None and cb.on_epoch(record, None) is None and cb.on_end(None) is None
    assert cb.state_dict() == {} and cb.load_state_dict({"x": 1}) is None
    assert cb.runs_on_every_rank is False and cb.state_key == "Callback" and not cb.has_state

    class Counter(Callback):
        state_key = "counter"

        def state_dict(self):
            return {"n": 1}

    assert Counter().has_state and Counter().state_key == "counter"
    for cls in (PlotCallback, HessianMonitor, RobustDartsStop, DartsPlusStop, TensorBoardCallback):
        assert issubclass(cls, Callback)
    assert HessianMonitor.runs_on_every_rank and not PlotCallback.runs_on_every_rank


class OldStyle:
    """A callback of earlier releases: some of the methods, no base class."""

    def __init__(self):
        self.calls, self.count = [], 0

    def on_start(self, searcher):
        self.calls.append(("start", searcher.start_epoch))

    def on_record(self, searcher, record):
        self.count += 1
        record["old_style"] = self.count

    def check_stop(self, history):
        self.calls.append(("check", history[-1]["epoch"]))
        return Stop("old", history[-1]["epoch"], "asked") if history[-1]["epoch"] == 3 else None

    def on_epoch(self, record, run_dir):
        self.calls.append(("epoch", record["epoch"]))

    def on_end(self, result):
        self.calls.append(("end", len(result.metrics)))

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_an_old_duck_typed_callback_gets_its_hooks_called_and_its_state_kept(tiny_config, tmp_path):
    only_some = as_callback(type("OnlyEnd", (), {"on_end": lambda self, result: None})())
    assert isinstance(only_some, DuckCallback) and not only_some.has_state and only_some.state_key == "OnlyEnd"
    assert only_some.on_epoch_start(None, 0) is None and only_some.check_stop([]) is None
    mine = Callback()
    assert as_callback(mine) is mine

    cb = OldStyle()
    search(tiny_config | {"epochs": 4}, out=tmp_path / "run", progress=False, stop_after=2, callbacks=[cb])
    assert cb.calls == [("start", 0), ("check", 1), ("epoch", 1), ("check", 2), ("epoch", 2), ("end", 2)]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["callbacks"] == {"OldStyle": {"count": 2}}  # the key of earlier checkpoints: the class name
    again = OldStyle()
    result = search(resume=tmp_path / "run", progress=False, callbacks=[again])
    assert again.calls[0] == ("start", 2) and again.calls[-1] == ("end", 3)
    assert result.stopped["rule"] == "old" and [m["old_style"] for m in result.metrics] == [1, 2, 3]


def test_other_ranks_run_only_the_callbacks_that_run_on_every_rank():
    cfg = resolve_config(overrides=["monitor.hessian_every=1", "early_stop.robustdarts.enabled=true",
                                    "early_stop.dartsplus.enabled=true"])
    flagged = type("Flagged", (), {"runs_on_every_rank": True, "on_record": lambda self, s, r: None})()
    plain = OldStyle()
    callbacks = [*default_callbacks(cfg), flagged, plain]
    on_0, on_1 = for_rank(callbacks, 0), for_rank(callbacks, 1)
    assert [type(c) for c in on_0] == [HessianMonitor, RobustDartsStop, DartsPlusStop, PlotCallback,
                                      DuckCallback, DuckCallback]
    assert [c.target for c in on_0[-2:]] == [flagged, plain]
    assert [type(c) for c in on_1] == [HessianMonitor, DuckCallback] and on_1[1].target is flagged
    assert on_1[0] is callbacks[0]  # a Callback is not wrapped


# --- stage hooks --------------------------------------------------------------------------------------

def first_cell_sep_convs(model) -> list[tuple[MixedEdge, int]]:
    edges = [m for m in model.modules() if isinstance(m, MixedEdge)][:2]  # the first cell's first edges
    return [(e, e.active.index(e.op_names.index("sep_conv_3x3"))) for e in edges]


class PruneSepConv(Callback):
    """A stage hook: from epoch ``at`` on, the sep_conv_3x3 of the first cell's first two edges is
    pruned (a Zero op in its place: its weights leave the supernet). A function of the epoch only,
    so a resumed run replays it."""

    runs_on_every_rank = True

    def __init__(self, at: int = 1):
        self.at, self.seen = at, []

    def on_epoch_start(self, searcher, epoch):
        self.seen.append((epoch, searcher.replaying))
        if epoch == self.at:
            for edge, j in first_cell_sep_convs(searcher.model):
                edge.ops[j] = Zero(edge.stride)

    def on_record(self, searcher, record):  # the optimizers hold exactly the supernet's parameters
        held = [id(p) for g in searcher.w_opt.param_groups for p in g["params"]]
        assert held == [id(p) for p in searcher.model.weight_parameters()]
        assert set(map(id, searcher.w_opt.state)) <= set(held)
        record["weights"] = len(held)


def test_refresh_optimizers_keeps_the_state_of_the_parameters_that_remain(tiny_config, tmp_path):
    s = Searcher(resolve_config(config_file=copy.deepcopy(tiny_config) | {"epochs": 3}), tmp_path, progress=False)
    assert s.refresh_optimizers() is False  # nothing changed
    s.train_epoch(0)
    before = {id(p): (p, s.w_opt.state[p], s.w_opt.state[p]["momentum_buffer"].clone())
              for p in s.model.weight_parameters()}
    adam = {id(p): s.a_opt.state[p] for p in s.model.arch_parameters()}
    lr = s.w_opt.param_groups[0]["lr"]
    pruned = [p for edge, j in first_cell_sep_convs(s.model) for p in edge.ops[j].parameters()]
    PruneSepConv(at=1).on_epoch_start(s, 1)
    assert s.refresh_optimizers() is True
    now = s.model.weight_parameters()
    assert [p for g in s.w_opt.param_groups for p in g["params"]] == now and len(now) == len(before) - len(pruned)
    for p in now:
        _, state, momentum = before[id(p)]
        assert s.w_opt.state[p] is state and torch.equal(state["momentum_buffer"], momentum)
    assert not any(p in s.w_opt.state for p in pruned)
    assert all(s.a_opt.state[p] is adam[id(p)] for p in s.model.arch_parameters())  # Adam's moments
    assert s.w_opt.param_groups[0]["lr"] == lr and s.scheduler.optimizer is s.w_opt
    s.train_epoch(1)  # trains on; the schedule goes on from where it was
    assert s.scheduler.last_epoch == 2 and s.w_opt.param_groups[0]["lr"] < lr


def test_a_stage_hook_changes_the_supernet_and_a_resume_replays_it_exactly(tiny_config, tmp_path):
    cfg = tiny_config | {"epochs": 3}
    hook = PruneSepConv()
    full = search(cfg, out=tmp_path / "full", progress=False, callbacks=[hook])
    assert hook.seen == [(0, False), (1, False), (2, False)]
    weights = [m["weights"] for m in full.metrics]
    assert weights[0] > weights[1] == weights[2]  # pruned at the start of epoch 2 (epoch index 1)

    search(cfg, out=tmp_path / "part", progress=False, stop_after=2, callbacks=[PruneSepConv()])
    saved = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    again = PruneSepConv()
    resumed = search(resume=tmp_path / "part", progress=False, callbacks=[again])
    assert again.seen == [(0, True), (1, True), (2, False)]  # replayed, then live
    for key in ("train_loss", "val_loss", "alpha", "weights", "genotype"):
        assert [m[key] for m in resumed.metrics] == [m[key] for m in full.metrics], key
    end_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    end_resumed = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert end_full["model"].keys() == end_resumed["model"].keys() and len(saved["model"]) == len(end_full["model"])
    assert all(torch.equal(v, end_resumed["model"][k]) for k, v in end_full["model"].items())
    # without the hook, the pruned checkpoint does not fit the supernet the config builds: one line
    with pytest.raises(UserError, match="checkpoint.pt does not fit"):
        search(resume=tmp_path / "full", progress=False)

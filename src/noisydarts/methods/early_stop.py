"""Early stopping of a search: RobustDARTS' eigenvalue criterion and DARTS+' skip-count criterion.

Both are search callbacks (:class:`noisydarts.runtime.callbacks.Callback`, rank 0 only) with
``check_stop(history) -> Stop | None`` (``history``: every epoch record so far, the current one
last). A :class:`Stop` ends the search after that epoch; the
loop writes it into the epoch's record (``stopped``), the checkpoint and ``genotype.json``,
whose architecture is that epoch's. The rules themselves are pure functions of the logged
metrics, so they are tested on hand-made sequences.

* **RobustDARTS** (Zela et al., ICLR 2020, Sec. 4.3, DARTS-ES): stop when the local average of
  the dominant Hessian eigenvalue has grown by more than a factor since ``delta`` measurements
  before. Read from the authors' release (automl/RobustDARTS, ``src/utils.py``
  ``EVLocalAvg.early_stop``, defaults in ``src/search/args.py``, eigenvalue every 2 epochs in
  ``scripts/DARTS-ADA_search.sh``): local averages over a centred ``window`` of 5 measurements
  (truncated at the start), ``delta`` = 4 local averages back, ``factor`` = 1.3, and no stop
  while the earlier centre is within the first ``start_epoch`` = 10 epochs. The release then
  returns the architecture of that earlier centre epoch; here the run keeps the stop epoch's
  architecture (genotype.json) and records the release's choice as ``rollback_epoch`` and
  ``rollback_genotype``.
* **DARTS+** (Liang et al., 2019, Criterion 1): stop as soon as the derived normal cell has two
  or more skip connections (``skips``). In NAS-Bench-201 (one cell type) the cell's count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import config
from ..errors import UserError
from ..runtime.callbacks import Callback


@dataclass
class Stop:
    """Why a search stopped early: ``rule``, the 1-based ``epoch`` after which it stopped, a one-line
    ``reason`` and the numbers behind it."""

    rule: str
    epoch: int
    reason: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "epoch": self.epoch, "reason": self.reason, **self.details}


def local_average(values: list[float], centre: int, window: int) -> float:
    """Mean of ``values`` over a window of ``window`` entries centred at ``centre``, truncated at the
    start (the release's local average; it needs ``window // 2`` values after ``centre``)."""
    half = window // 2
    chunk = values[max(0, centre - half): centre + half + 1]
    return sum(chunk) / len(chunk)


def robustdarts_rule(epochs: list[int], eigenvalues: list[float], window: int = 5, delta: int = 4,
                     factor: float = 1.3, start_epoch: int = 10) -> Stop | None:
    """RobustDARTS' early stop on the eigenvalues measured so far (``epochs[i]``: the 1-based epoch
    of measurement ``i``). The newest complete local average is centred at ``m = n - 1 - window//2``;
    stop when it exceeds ``factor`` times the one centred ``delta`` measurements before, once that
    earlier centre lies after epoch ``start_epoch``."""
    n = len(eigenvalues)
    current = n - 1 - window // 2
    earlier = current - delta
    if earlier < 0 or epochs[earlier] <= start_epoch:
        return None
    now, before = local_average(eigenvalues, current, window), local_average(eigenvalues, earlier, window)
    if before <= 0 or now / before <= factor:
        return None
    return Stop("robustdarts", epochs[-1],
                f"RobustDARTS criterion: the dominant Hessian eigenvalue (local average over {window} measurements) "
                f"grew {now / before:.2f}x (> {factor}) from epoch {epochs[earlier]} to epoch {epochs[current]}",
                {"ratio": now / before, "local_average": now, "earlier_local_average": before,
                 "rollback_epoch": epochs[earlier]})


def dartsplus_rule(record: dict, skips: int = 2) -> Stop | None:
    """DARTS+ Criterion 1: ``skips`` or more skip connections in the derived normal cell."""
    key = "skip_normal" if "skip_normal" in record else "skip_count" if "skip_count" in record else None
    if key is None:
        raise UserError("early_stop.dartsplus needs a space that logs the skip connections of its cell "
                        "(skip_normal or skip_count in metrics.jsonl): switch it off for this space")
    if record[key] < skips:
        return None
    cell = "normal cell" if key == "skip_normal" else "cell"
    return Stop("dartsplus", record["epoch"],
                f"DARTS+ criterion: {record[key]} skip connections in the derived {cell} (>= {skips})",
                {"skips": record[key]})


class RobustDartsStop(Callback):
    """``early_stop.robustdarts``: :func:`robustdarts_rule` on the ``hessian_eig`` values logged by
    the Hessian monitor (``monitor.hessian_every`` must be on)."""

    def __init__(self, cfg: dict):
        r = cfg["early_stop"]["robustdarts"]
        self.window, self.delta, self.factor, self.start_epoch = r["window"], r["delta"], r["factor"], r["start_epoch"]
        self.epochs = cfg["epochs"]

    def check_stop(self, history: list[dict]) -> Stop | None:
        if history[-1]["epoch"] >= self.epochs or "hessian_eig" not in history[-1]:
            return None  # nothing to stop at the last epoch; decide only when a new value comes in
        measured = [r for r in history if "hessian_eig" in r]
        stop = robustdarts_rule([r["epoch"] for r in measured], [r["hessian_eig"] for r in measured],
                                self.window, self.delta, self.factor, self.start_epoch)
        if stop is not None:
            rollback = next(r for r in measured if r["epoch"] == stop.details["rollback_epoch"])
            stop.details["rollback_genotype"] = rollback.get("genotype")
        return stop


class DartsPlusStop(Callback):
    """``early_stop.dartsplus``: :func:`dartsplus_rule` on each epoch's derived cell."""

    def __init__(self, cfg: dict):
        self.skips, self.epochs = cfg["early_stop"]["dartsplus"]["skips"], cfg["epochs"]

    def check_stop(self, history: list[dict]) -> Stop | None:
        if history[-1]["epoch"] >= self.epochs:
            return None
        return dartsplus_rule(history[-1], self.skips)


# --- config --------------------------------------------------------------------------------------

#: The ``early_stop`` config section: both rules off by default.
DEFAULTS: dict = {
    "robustdarts": {
        "enabled": False,        # DARTS-ES: stop when the local average eigenvalue grew by `factor`
        "window": 5,             # measurements in a centred local average
        "delta": 4,              # compare with the local average this many measurements back
        "factor": 1.3,           # growth that stops the search
        "start_epoch": 10,       # no stop while the earlier centre is within these first epochs
    },
    "dartsplus": {
        "enabled": False,        # DARTS+: stop once the normal cell has `skips` skip connections
        "skips": 2,              # skip connections that stop the search
    },
}


def validate(cfg: dict) -> None:
    rd, dp = cfg["early_stop"]["robustdarts"], cfg["early_stop"]["dartsplus"]
    config.check(not rd["enabled"] or cfg["monitor"]["hessian_every"] >= 1,
                 "early_stop.robustdarts needs the Hessian monitor: set monitor.hessian_every "
                 "(the release measures every 2 epochs)")
    config.check(rd["window"] >= 1 and rd["delta"] >= 1 and rd["start_epoch"] >= 0,
                 "early_stop.robustdarts: window and delta must be at least 1, start_epoch at least 0")
    config.check(rd["factor"] > 0, f"early_stop.robustdarts.factor must be > 0, got {rd['factor']}")
    config.check(dp["skips"] >= 1, f"early_stop.dartsplus.skips must be at least 1, got {dp['skips']}")


config.SEARCH.register("early_stop", DEFAULTS, validate=validate, owner=__name__)

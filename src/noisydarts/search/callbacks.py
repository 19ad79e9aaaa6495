"""Search callbacks switched on by the config: plots and report at the end, TensorBoard scalars
(both shared with training runs: :mod:`noisydarts.viz.callbacks`), the Hessian monitor and the
early-stopping rules.

A callback is a :class:`noisydarts.runtime.callbacks.Callback` (the contract: its hooks, which
ranks run them, stage hooks and resume); objects with some of its methods work too (they are
wrapped). :func:`default_callbacks` builds the ones a config asks for, so the search loop itself
knows nothing about plotting, logging, monitoring or stopping.
"""

from __future__ import annotations

from ..runtime.callbacks import method_callbacks
# Plots, report and TensorBoard are shared with training runs: they live in noisydarts.viz.callbacks
# (re-exported here, where they were first defined, under the same names).
from ..viz.callbacks import NOT_SCALARS as _NOT_SCALARS  # noqa: F401
from ..viz.callbacks import SCALAR_GROUPS, PlotCallback, TensorBoardCallback  # noqa: F401


def default_callbacks(cfg: dict) -> list:
    """The callbacks a resolved config asks for (``monitor``, ``early_stop``, ``plots``,
    ``tensorboard``), in the order they run: measurements first (they add to the epoch's record),
    then the stopping rules that read them. Built before the search starts, so that a missing
    package is reported before any work is done. Under torchrun every rank builds them; the loop
    runs those with ``runs_on_every_rank`` (the Hessian monitor) on every rank, the others on
    rank 0 only (:func:`noisydarts.runtime.callbacks.for_rank`)."""
    callbacks = method_callbacks(cfg)  # stage hooks of the method (they change the supernet first)
    if cfg.get("monitor", {}).get("hessian_every", 0):
        from ..methods.hessian import HessianMonitor

        callbacks.append(HessianMonitor(cfg))
    early = cfg.get("early_stop", {})
    if early.get("robustdarts", {}).get("enabled", False) or early.get("dartsplus", {}).get("enabled", False):
        from ..methods.early_stop import DartsPlusStop, RobustDartsStop

        callbacks += [rule(cfg) for key, rule in (("robustdarts", RobustDartsStop), ("dartsplus", DartsPlusStop))
                      if early[key]["enabled"]]
    if cfg.get("tensorboard", False):
        callbacks.append(TensorBoardCallback())
    if cfg.get("plots", True):
        callbacks.append(PlotCallback())
    return callbacks

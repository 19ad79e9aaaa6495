"""The callbacks a training config switches on: ``plots`` (``plots/`` and ``report.{md,html}`` at
the end of the run, also one stopped by ``stop_after``) and ``tensorboard`` (each epoch's scalars
in ``RUN_DIR/tensorboard``). They are the search's own (:mod:`noisydarts.viz.callbacks`), so a
training run is drawn and logged as a search is; the Trainer calls their ``on_epoch`` and
``on_end`` on rank 0 (:meth:`noisydarts.train.loop.Trainer.run`).
"""

from __future__ import annotations

from ..viz.callbacks import PlotCallback, TensorBoardCallback


def default_callbacks(cfg: dict) -> list:
    """The callbacks a resolved training config asks for, TensorBoard before the plots. Built
    before the run starts, so that a missing tensorboard package is reported before any work."""
    callbacks = []
    if cfg.get("tensorboard", False):
        callbacks.append(TensorBoardCallback())
    if cfg.get("plots", True):
        callbacks.append(PlotCallback())
    return callbacks

"""Search callbacks switched on by the config: plots and report at the end, TensorBoard scalars,
the Hessian monitor and the early-stopping rules.

A callback is a :class:`noisydarts.runtime.callbacks.Callback` (the contract: its hooks, which
ranks run them, stage hooks and resume); objects with some of its methods work too (they are
wrapped). :func:`default_callbacks` builds the ones a config asks for, so the search loop itself
knows nothing about plotting, logging, monitoring or stopping.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path

from ..errors import UserError
from ..runtime.callbacks import Callback, method_callbacks

#: Per-epoch scalars worth a TensorBoard chart (any other numeric key is logged under ``other/``).
SCALAR_GROUPS = {
    "train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train", "val_acc": "accuracy/val",
    "lr": "lr", "epoch_time": "time/epoch_s", "skip_normal": "skip/normal", "skip_reduce": "skip/reduce",
    "skip_count": "skip/cell", "cifar10_test": "nb201/cifar10_test", "cifar100_test": "nb201/cifar100_test",
    "imagenet16_test": "nb201/imagenet16_test", "hessian_eig": "hessian/eigenvalue",
}
_NOT_SCALARS = {"epoch", "nb201_index"}


class PlotCallback(Callback):
    """At the end of a search (finished or stopped early): ``plots/`` and ``report.{md,html}``.
    A failure here warns: the search itself is already safely on disk."""

    def on_end(self, result) -> None:
        try:
            from ..viz.run import plot_run
            from ..viz.report import write_report

            plot_run(result.run_dir)
            write_report([result.run_dir])
        except Exception as e:  # noqa: BLE001 - never lose a finished search to a plotting problem
            warnings.warn(f"could not write the plots and report of {result.run_dir} ({type(e).__name__}: {e}); "
                          f"try `noisydarts plot {result.run_dir}` and `noisydarts report {result.run_dir}`",
                          stacklevel=2)


class TensorBoardCallback(Callback):
    """Writes each epoch's scalars to ``RUN_DIR/tensorboard`` (needs the tensorboard package)."""

    def __init__(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from e
        self._writer_class, self._writer = SummaryWriter, None

    def on_epoch(self, record: dict, run_dir: Path) -> None:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(Path(run_dir) / "tensorboard"))
        step = int(record["epoch"])
        for key, value in record.items():
            if key in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            self._writer.add_scalar(SCALAR_GROUPS.get(key, f"other/{key}"), float(value), step)
        self._writer.flush()

    def on_end(self, result) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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

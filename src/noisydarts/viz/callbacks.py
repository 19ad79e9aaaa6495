"""The callbacks that draw and log a run as it goes, shared by ``search`` and ``train``:
:class:`PlotCallback` (``plots/`` and ``report.{md,html}`` at the end) and
:class:`TensorBoardCallback` (each epoch's scalars in ``RUN_DIR/tensorboard``).

They live here, below both loops, so that a search and a training run draw and log the same way
(the layers rule keeps ``train`` from importing ``search``); ``noisydarts.search.callbacks``
re-exports them under their old names. Both are plain :class:`noisydarts.runtime.callbacks.Callback`
objects using ``on_epoch(record, run_dir)`` and ``on_end(result)`` only (``result.run_dir`` is all
they read), so they run on rank 0 alone under torchrun. This module imports neither matplotlib
nor TensorBoard at import time: a run that turns both off pays for neither.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path

from ..errors import UserError
from ..runtime.callbacks import Callback

#: Per-epoch scalars worth a TensorBoard chart, by metrics.jsonl key, for search and training runs
#: alike (their keys differ: val_* in a search, test_*/holdout_* in a training run). Any other
#: numeric key is logged under ``other/``.
SCALAR_GROUPS = {
    "train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test", "holdout_loss": "loss/holdout",
    "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
    "test_top5": "accuracy/test_top5", "holdout_acc": "accuracy/holdout",
    "lr": "lr", "epoch_time": "time/epoch_s", "skip_normal": "skip/normal", "skip_reduce": "skip/reduce",
    "skip_count": "skip/cell", "cifar10_test": "nb201/cifar10_test", "cifar100_test": "nb201/cifar100_test",
    "imagenet16_test": "nb201/imagenet16_test", "hessian_eig": "hessian/eigenvalue",
}
#: Numeric keys that are no measurement (the step itself, a table index).
NOT_SCALARS = {"epoch", "nb201_index"}


class PlotCallback(Callback):
    """At the end of a run (finished, stopped early or by ``stop_after``): ``plots/`` and
    ``report.{md,html}`` (:func:`noisydarts.viz.run.plot_run`, :func:`noisydarts.viz.report.write_report`,
    which tell a search run from a training run). A failure here warns: the run itself is already
    safely on disk."""

    def on_end(self, result) -> None:
        try:
            from .report import write_report
            from .run import plot_run

            plot_run(result.run_dir)
            write_report([result.run_dir])
        except Exception as e:  # noqa: BLE001 - never lose a finished run to a plotting problem
            warnings.warn(f"could not write the plots and report of {result.run_dir} ({type(e).__name__}: {e}); "
                          f"try `noisydarts plot {result.run_dir}` and `noisydarts report {result.run_dir}`",
                          stacklevel=2)


class TensorBoardCallback(Callback):
    """Writes each epoch's scalars to ``RUN_DIR/tensorboard`` (needs the tensorboard package: a
    missing one is a :class:`UserError` when the callback is built, before the run starts)."""

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
            if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            self._writer.add_scalar(SCALAR_GROUPS.get(key, f"other/{key}"), float(value), step)
        self._writer.flush()

    def on_end(self, result) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

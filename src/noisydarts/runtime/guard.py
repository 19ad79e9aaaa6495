"""The divergence guard: a run whose numbers stop being finite ends at once, cleanly.

A huge learning rate or noise scale makes the loss, the weights or alpha NaN or infinite; the
search would then go on, derive a meaningless genotype (every argmax of NaN) and report it. The
guard checks at the end of every epoch, before anything of that epoch is written:

* the epoch's logged sums (losses: already Python floats, no extra cost), and
* alpha and every floating tensor of the model (weights, BatchNorm statistics), reduced on the
  device to one flag per group and read with a single host sync per epoch.

If anything is not finite it raises :class:`Diverged` (exit code 3 in the CLI): the epoch's
metrics and checkpoint are not written, so the run directory keeps its last good checkpoint, and
no genotype.json or plots are made from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ..errors import Diverged


def nonfinite(values: Mapping[str, float], tensors: Mapping[str, Iterable] | None = None) -> list[str]:
    """The names of the ``values`` (numbers) and ``tensors`` (groups of tensors) that hold a NaN or
    an infinity. The tensor groups cost one device-to-host copy in all."""
    import torch

    bad = [name for name, v in values.items() if v is not None and not math.isfinite(v)]
    # Non-tensor entries (a module's extra state in a state_dict) have nothing to check.
    groups = {name: [t for t in ts if torch.is_tensor(t) and t.is_floating_point()] for name, ts in (tensors or {}).items()}
    groups = {name: ts for name, ts in groups.items() if ts}
    if groups:
        # A sum is NaN or infinite when any element is (inf - inf = NaN): one number per tensor.
        flags = torch.stack([torch.stack([t.detach().float().sum() for t in ts]).sum().isfinite()
                             for ts in groups.values()])
        bad += [name for name, ok in zip(groups, flags.tolist()) if not ok]
    return bad


def optimizer_tensors(*optimizers) -> list:
    """The state tensors of optimizers (momentum buffers, Adam moments): a NaN there reaches the
    weights at the next step, so it is checked with them."""
    import torch

    return [t for opt in optimizers for state in opt.state.values() for t in state.values() if torch.is_tensor(t)]


def check_epoch(epoch: int, run_dir, what: str, values: Mapping[str, float], tensors: Mapping[str, Iterable] | None = None,
                hint: str = "lower the learning rate", agree=None) -> None:
    """Raise :class:`Diverged` if epoch ``epoch`` (1-based) left anything non-finite. ``agree(names,
    bad) -> bad``: makes the verdict the same on every process of a data-parallel run
    (:func:`noisydarts.runtime.distributed.agree_nonfinite`), so they all stop, or none."""
    bad = nonfinite(values, tensors)
    if agree is not None:
        bad = agree([*values, *(tensors or {})], bad)
    if not bad:
        return
    kept = (f"{run_dir} keeps the checkpoint of epoch {epoch - 1}" if epoch > 1
            else f"no epoch of {run_dir} finished with finite values")
    raise Diverged(f"the {what} diverged in epoch {epoch} (non-finite {', '.join(bad)}) and stopped before writing "
                   f"that epoch; {kept}; {hint}, and start a new run")


def first_nonfinite_epoch(records: Iterable[dict], key: str = "alpha") -> int | None:
    """The first metrics record whose ``key`` (nested lists of numbers) holds a NaN, an infinity or
    something that is not a number; such a run has nothing meaningful to draw or derive."""

    def finite(x) -> bool:
        if isinstance(x, Mapping):
            return all(finite(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return all(finite(v) for v in x)
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    for i, record in enumerate(records):
        if not finite(record.get(key, [])):
            return int(record.get("epoch", i + 1))
    return None

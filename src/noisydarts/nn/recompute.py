"""Activation checkpointing for the supernets (``space.checkpoint``), and keeping less in general.

A supernet keeps, for the backward pass, the internals of every candidate op on every mixed edge:
about 4 GB at batch 32 in the standard DARTS supernet. :func:`recompute` runs one part of the
network (a mixed edge, an mbv2 layer) under :func:`torch.utils.checkpoint.checkpoint` (non-reentrant): only its
inputs are kept, and its internals are computed again when the backward pass needs them, at the
cost of about one more forward pass. Three things make the recomputation give exactly the
numbers of the first pass:

* **random draws** (NoisyDARTS noise, dropout): the RNG state of the first pass is stashed and
  replayed (``preserve_rng_state``), so the recomputation draws the same noise;
* **other weights**: the estimators evaluate losses at other weights through
  :func:`torch.func.functional_call` (the unrolled ``w'`` of second-order DARTS), which puts the
  model's own parameters back before the backward pass runs. The parameters a part ran with are
  therefore captured in the first pass, and a recomputation that finds others in the module runs
  with the captured ones (``functional_call`` again);
* **BatchNorm running statistics**: a training-mode BN updates them on every forward, so the
  recomputation would update them twice. Its running buffers are saved before the recomputation
  and written back after it: they end exactly as without checkpointing.

:func:`frozen` is the other half of keeping less: autograd saves a tensor only if some input that
requires a gradient needs it (``y`` in ``y * w`` only when ``w`` requires one). The search loop
runs the weight step with α frozen and first-order architecture steps with the weights frozen,
so neither keeps what only the other's gradient needs.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

#: ``space.checkpoint`` values: recompute in the backward pass or not; ``auto``: on CUDA only.
CHECKPOINT_CHOICES = (True, False, "auto")


def resolve_checkpoint(value, device) -> bool:
    """``space.checkpoint`` for a device: ``auto`` is on where memory is the scarce resource (a
    GPU) and off on CPU, where a search is limited by time, not memory."""
    if value == "auto":
        if device in (None, "auto"):
            return torch.cuda.is_available()
        return torch.device(device).type != "cpu"
    return bool(value)


def check_checkpoint(value) -> None:
    from ..errors import UserError

    if not any(value is choice or (isinstance(value, str) and value == choice) for choice in CHECKPOINT_CHOICES):
        raise UserError(f"space.checkpoint must be true, false or auto (true on a GPU), got {value!r}")


def _running_stat_modules(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers in ``module`` that keep running statistics (cached on the module)."""
    found = module.__dict__.get("_checkpoint_bns")
    if found is None:
        found = [m for m in module.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None]
        module.__dict__["_checkpoint_bns"] = found
    return found


class _KeepRunningStats:
    """Entered around a recomputation: BN running buffers are written back as they were."""

    def __init__(self, bns):
        self.bns, self.saved = bns, None

    def __enter__(self):
        self.saved = [(m.running_mean.clone(), m.running_var.clone(),
                       None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in self.bns]

    def __exit__(self, *exc):
        # Through .data: the recomputed BN saved its running buffers for the backward pass, and a
        # write that bumped their version counters would fail autograd's in-place check there.
        with torch.no_grad():
            for m, (mean, var, count) in zip(self.bns, self.saved):
                m.running_mean.data.copy_(mean)
                m.running_var.data.copy_(var)
                if count is not None:
                    m.num_batches_tracked.data.copy_(count)
        self.saved = None
        return False


class _Call(nn.Module):
    """``fn(*inputs)`` as a module owning ``module``, for :func:`torch.func.functional_call`."""

    def __init__(self, module: nn.Module, fn):
        super().__init__()
        self.module = module
        # Not a submodule (fn is often ``module`` itself): functional_call would otherwise see
        # every parameter under two names and restore one of them to the substitute.
        self.__dict__["fn"] = fn

    def forward(self, *inputs):
        return self.fn(*inputs)


def recompute(module: nn.Module, fn, *args):
    """``fn(*args)``, computing with ``module``'s parameters, kept for the backward pass as its
    inputs only and computed again there (see the module docstring). Use only where autograd
    records (``torch.is_grad_enabled()``); elsewhere call ``fn`` directly."""
    names, tensors = [], []
    for name, t in module.named_parameters():
        names.append(name)
        tensors.append(t)
    bns = [m for m in _running_stat_modules(module) if m.training]

    def run(*inputs):
        if all(t is p for t, (_, p) in zip(tensors, module.named_parameters())):
            return fn(*inputs)
        # The first pass ran inside functional_call with other weights: run with those again.
        return torch.func.functional_call(_Call(module, fn), {f"module.{n}": t for n, t in zip(names, tensors)}, inputs)

    def contexts():
        return contextlib.nullcontext(), (_KeepRunningStats(bns) if bns else contextlib.nullcontext())

    return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True, context_fn=contexts)


@contextlib.contextmanager
def frozen(params):
    """Turn ``requires_grad`` off for ``params`` for the duration (forward *and* backward: a
    checkpointed part must be recomputed as it first ran), then back on where it was on."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)

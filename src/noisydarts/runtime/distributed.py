"""Data-parallel search and training over several processes, with :mod:`torch.distributed`.

Launch with torchrun, one process per GPU (or, on CPU, per group of cores)::

    torchrun --nproc_per_node=4 -m noisydarts search --preset noisydarts-cifar10
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        --rdzv-id=search1 -m noisydarts search --preset noisydarts-cifar10

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them everything here is the
identity and a run is the single-process run it always was.

**What is shared and how.** Every global batch of ``batch_size`` images is drawn in the same
order with the same augmentation draws on every rank; rank ``r`` keeps its slice (the data
sources' ``shard=(rank, world)``), so ``N`` ranks at ``B/N`` images each see exactly the images
one process sees at ``B``. Each rank computes its gradients on its slice; the weight gradients
and the architecture gradients are averaged over ranks (weighted by slice size: exactly the mean
over the global batch) by :func:`all_reduce_mean`, in one flat buffer per dtype. Every estimator
reduces what it needs through :meth:`noisydarts.methods.estimators.StepContext.reduce`, intermediate
vectors included (second order: the weight gradient of the virtual step and ``v`` before ``w ±
r v``; Amended: ``v`` and ``H v``). The optimizers then do identical arithmetic on identical
gradients, so α and the weights stay bit-identical on every rank (they start from rank 0's,
:func:`broadcast_module`).

Why not :class:`torch.nn.parallel.DistributedDataParallel`: its gradient hooks fire in
``loss.backward()`` over the module's parameters. The bilevel step differentiates w.r.t. α
alone, at other weights through :func:`torch.func.functional_call`, and twice (second order,
Amended); each needs its own reduction at its own point. The weight gradients are reduced after
the backward pass, not overlapped with it (a few MB for the DARTS supernet).

**Randomness.** The data order and augmentation come from (seed, epoch)-seeded generators,
identical on every rank. The global generator (NoisyDARTS noise, dropout, the second-order
estimator's per-step seeds) is seeded ``seed`` on rank 0, as a single process, and
:func:`rank_seed` on the others, so each slice draws its own noise. Checkpoints keep every rank's
RNG state.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from .. import config
from ..errors import UserError

#: The ``distributed`` section of search and training configs: data-parallel runs under torchrun.
DEFAULTS: dict = {
    "backend": "auto",      # auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    "sync_bn": False,       # batch statistics over all ranks' slices (SyncBatchNorm)
    "noise_std": "local",   # NoisyDARTS sigma = lambda * std(x) of this rank's slice (local) or of all (global)
    "timeout_min": 30.0,    # how long a collective waits for the other ranks before the run fails
}
BACKENDS = ("auto", "gloo", "nccl")
NOISE_STD = ("local", "global")


def validate_section(section: dict) -> None:
    """Range checks of a ``distributed`` section (search and training configs)."""
    config.check_choice("distributed.backend", section["backend"], BACKENDS)
    config.check_choice("distributed.noise_std", section["noise_std"], NOISE_STD)
    config.check(section["timeout_min"] > 0, f"distributed.timeout_min must be > 0, got {section['timeout_min']}")


config.SEARCH.register("distributed", DEFAULTS, validate=lambda cfg: validate_section(cfg["distributed"]),
                       owner=__name__)

#: Gradient tensors are reduced in flat buffers of at most this many bytes (one per dtype).
BUCKET_BYTES = 64 * 2**20


# --- who am I -----------------------------------------------------------------------------------

def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched_world() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def active() -> bool:
    """Whether this process is one of several with an initialized process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return launched_world()


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Rank 0 (also before the process group exists): the one process that writes and prints."""
    return rank() == 0


def shard() -> tuple[int, int]:
    """``(rank, world size)`` for the data sources."""
    return rank(), world_size()


def rank_seed(seed: int, rank_: int) -> int:
    """The global generator's seed on ``rank_``: ``seed`` on rank 0 (as a single process), a
    distinct one on the others (so each slice draws its own noise)."""
    return seed if rank_ == 0 else (seed * 1_000_003 + 7919 * rank_) % 2**62


# --- setup --------------------------------------------------------------------------------------

def pick_device(name: str) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` under torchrun with ``auto``/``cuda``;
    ``cpu``; ``cuda:N`` only in a single process."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        name = "cuda" if cuda else "cpu"
    if name.startswith("cuda") and not cuda:
        raise UserError(f"device {name!r} asked for but CUDA is not available: use --set device=cpu")
    if launched_world() > 1 and name.startswith("cuda"):
        if name != "cuda":
            raise UserError(f"device {name!r} names one GPU, but torchrun started {launched_world()} processes: "
                            "use --set device=cuda (each process takes the GPU of its LOCAL_RANK)")
        if local_rank() >= torch.cuda.device_count():
            raise UserError(f"torchrun started {launched_world()} processes on this node but it has "
                            f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node={torch.cuda.device_count()}")
        return torch.device("cuda", local_rank())
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e


def check_launch(cfg: dict, device: torch.device) -> str | None:
    """The backend a torchrun launch will use, after checking that the launch can work (one
    line each: every rank finds the same answer, the CLI prints it on rank 0). None: no torchrun."""
    world = launched_world()
    section = cfg.get("distributed", DEFAULTS)
    if world == 1:
        return None
    if not torch.distributed.is_available():
        raise UserError("torchrun started several processes, but this PyTorch build has no torch.distributed: "
                        "run a single process, or install a PyTorch with distributed support")
    batch = cfg["batch_size"]
    if batch % world:
        raise UserError(f"batch_size {batch} does not divide among the {world} processes torchrun started: "
                        f"use a multiple of {world} (each process takes batch_size / {world} images of every batch)")
    backend = section["backend"]
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise UserError(f"distributed.backend nccl runs on CUDA devices, but this run is on {device.type}: "
                        "use --set distributed.backend=gloo (or auto)")
    available = {"gloo": torch.distributed.is_gloo_available(), "nccl": torch.distributed.is_nccl_available()}
    if not available[backend]:
        other = [b for b, ok in available.items() if ok]
        raise UserError(f"the {backend} backend is not available in this PyTorch build: use "
                        + (f"--set distributed.backend={other[0]}" if other else "a build with torch.distributed"))
    return backend


def setup(cfg: dict) -> torch.device:
    """This process's device and, under torchrun, the process group (once per process). Bad
    launches are one :class:`UserError` line on every rank, before any process waits on another."""
    device = pick_device(cfg["device"])
    backend = check_launch(cfg, device)
    if backend is None or torch.distributed.is_initialized():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(minutes=cfg.get("distributed", DEFAULTS)["timeout_min"])
    try:
        torch.distributed.init_process_group(backend, timeout=timeout,
                                             device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"could not join the other {launched_world() - 1} processes ({str(e).splitlines()[0][:160]}): "
                        "check the torchrun rendezvous (--rdzv-endpoint, MASTER_ADDR/MASTER_PORT)") from e
    return device


def teardown() -> None:
    """End the process group (the CLI calls it once the command is done)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# --- what rank 0 decides ------------------------------------------------------------------------

class FollowerExit(UserError):
    """Raised on ranks other than 0 when rank 0 failed to set a run up; it carries rank 0's message
    (the CLI prints nothing on those ranks)."""


def on_main(fn: Callable, *args):
    """Run ``fn(*args)`` on rank 0 only and hand its result (a picklable value) to every rank; a
    :class:`UserError` on rank 0 is raised on rank 0 and, as :class:`FollowerExit`, on the others,
    so that no rank waits for one that has given up."""
    if not active():
        return fn(*args)
    box: list = [None]
    error = None
    if is_main():
        try:
            box[0] = ("ok", fn(*args))
        except UserError as e:
            error, box[0] = e, ("error", str(e))
        except BaseException as e:  # noqa: BLE001 - told to the others, then raised here as it was
            error, box[0] = e, ("error", f"rank 0 failed: {type(e).__name__}: {e}")
    torch.distributed.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    status, value = box[0]
    if status == "error":
        raise FollowerExit(value)
    return value


# --- collectives --------------------------------------------------------------------------------

def _buckets(items: Sequence[tuple[int, torch.Tensor]], limit: int):
    bucket, size = [], 0
    for item in items:
        nbytes = item[1].numel() * item[1].element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append(item)
        size += nbytes
    if bucket:
        yield bucket


def all_reduce_mean(tensors: Sequence[torch.Tensor | None], count: int | None = None, *,
                    differentiable: bool = False, bucket_bytes: int = BUCKET_BYTES) -> list[torch.Tensor | None]:
    """The mean over ranks of each rank's ``tensors`` (None entries stay None), weighted by
    ``count`` (this rank's number of samples; None: equal weights): exactly the mean over the
    global batch of per-sample means. Tensors travel in flat buffers, one per (dtype, device),
    with the count in the buffer's last slot, so one collective reduces both. Identity in a
    single process. ``differentiable``: through :func:`differentiable_sum` (the backward pass
    sums the incoming gradients over ranks too), for a reduction inside a graph that is
    differentiated again (second order with ``exact: true``)."""
    out = list(tensors)
    if not active():
        return out
    groups: dict = {}
    for i, t in enumerate(tensors):
        if t is not None:
            groups.setdefault((t.dtype, t.device), []).append((i, t))
    for (dtype, device), items in groups.items():
        for bucket in _buckets(items, bucket_bytes):
            weight = torch.tensor([1.0 if count is None else float(count)], dtype=dtype, device=device)
            flat = torch.cat([t.reshape(-1) for _, t in bucket])
            flat = torch.cat([flat * weight, weight])
            if differentiable:
                flat = differentiable_sum(flat)
            else:
                torch.distributed.all_reduce(flat)
            mean = flat[:-1] / flat[-1]
            offset = 0
            for i, t in bucket:
                out[i] = mean[offset: offset + t.numel()].view_as(t)
                offset += t.numel()
    return out


class _SumOverRanks(torch.autograd.Function):
    """``sum_r x_r`` with its backward pass: the gradient of every rank's output reaches every
    rank's input, so the backward is the same sum (itself differentiable: double backward works)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad.contiguous())


def differentiable_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``x``, differentiable (identity in a single process)."""
    return _SumOverRanks.apply(x) if active() else x


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (in place; returned); identity in a single process."""
    if active():
        torch.distributed.all_reduce(tensor)
    return tensor


def _collective_device() -> torch.device:
    """Where small tensors of our own must be for a collective (NCCL reduces CUDA tensors only)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flags: Sequence[bool]) -> list[bool]:
    """Element-wise: true where any rank's ``flags`` is true (the same answer on every rank)."""
    if not active():
        return list(flags)
    as_int = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=_collective_device())
    torch.distributed.all_reduce(as_int, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in as_int.tolist()]


def agree_nonfinite(names: Sequence[str], bad: Sequence[str]) -> list[str]:
    """The divergence guard's verdict made the same on every rank: a name is bad if it is bad on
    any rank (:func:`noisydarts.runtime.guard.check_epoch`'s ``agree``)."""
    flags = any_rank([n in bad for n in names])
    return [n for n, f in zip(names, flags) if f]


def sum_over_ranks(values: Sequence[float | int | torch.Tensor]) -> list[float]:
    """Per-rank numbers (e.g. an epoch's loss sum, correct count and images seen) summed over
    ranks in float64, in one collective; as floats."""
    if not active():
        return [float(v) for v in values]
    device = _collective_device()
    t = torch.stack([torch.as_tensor(v).detach().to(device, torch.float64).reshape(()) for v in values])
    torch.distributed.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Every parameter and buffer of ``module`` set to rank 0's."""
    if not active():
        return
    for t in [*module.parameters(), *module.buffers()]:
        torch.distributed.broadcast(t.data, src=0)


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """BatchNorm running statistics (every floating buffer) averaged over ranks: each rank's are
    estimates from its own slices; the average is what validation and checkpoints use, the same
    on every rank (timm's ``distribute_bn``)."""
    if not active():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    for b, mean in zip(buffers, all_reduce_mean(buffers)):
        b.copy_(mean)


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank; ``[obj]`` in a single process."""
    if not active():
        return [obj]
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


# --- batch statistics over all ranks ------------------------------------------------------------

class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training-mode statistics are those of the global batch: per-channel sums
    are summed over ranks (differentiably, :func:`differentiable_sum`: the backward pass sums
    their gradients too, and double backward works, which second order with ``exact: true`` and
    Amended need). In eval mode, or in a single process, it is ``nn.BatchNorm2d``.

    Written out instead of :class:`torch.nn.SyncBatchNorm`, which runs on GPUs only and has no
    double backward. One sum over ranks per layer and pass: the per-channel sum and sum of
    squares, in float64 (so the variance, their difference, keeps float32's precision)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        dims = (0, 2, 3)
        x64 = x.double()
        count = x64.new_tensor([float(x.numel() // x.shape[1])])
        stats = differentiable_sum(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        y = x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return y


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm2d`` replaced by :class:`SyncBatchNorm2d` (same
    parameters and buffers, so state dicts load either way)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm2d):
        sync = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, device=_device_of(module))
        sync.load_state_dict(module.state_dict())
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _device_of(module: nn.Module):
    t = next(iter([*module.parameters(), *module.buffers()]), None)
    return None if t is None else t.device


# --- NoisyDARTS' sigma over all ranks -----------------------------------------------------------

def global_std(y: torch.Tensor) -> torch.Tensor:
    """``std(y)`` (unbiased) over every rank's ``y`` together (detached; one all-reduce of three
    numbers in float64); ``y.std()`` in a single process."""
    y = y.detach()
    if not active():
        return y.std()
    flat = y.reshape(-1).double()
    stats = torch.stack([flat.new_tensor(float(flat.numel())), flat.sum(), (flat * flat).sum()])
    torch.distributed.all_reduce(stats)
    n, s, ss = stats.unbind(0)
    var = (ss - s * s / n) / (n - 1).clamp(min=1)
    return var.clamp(min=0).sqrt().to(y.dtype)


@contextlib.contextmanager
def quiet_followers():
    """Silence warnings on ranks other than 0 (rank 0 says it once)."""
    if is_main():
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

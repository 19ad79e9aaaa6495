"""The dominant eigenvalue of the architecture Hessian, RobustDARTS' collapse indicator.

Zela et al. (2020), "Understanding and Robustifying Differentiable Architecture Search", Sec. 4:
as DARTS drifts towards a degenerate (skip-connection) cell, the largest eigenvalue
``lambda_max`` of ``H = nabla^2_alpha L_val(w, alpha)`` grows, and a large one goes with a large
drop in accuracy once the cell is discretized. This module estimates ``lambda_max`` without ever
forming ``H``:

* ``H`` is the Hessian of the search's validation loss (the supernet's ``training_loss``,
  in training mode as the architecture step computes it: BatchNorm on batch statistics) w.r.t.
  every architecture parameter of the supernet (all cell types, and PC-DARTS' edge betas
  where present) as one flat vector, averaged over a fixed set of search-val batches;
* Hessian-vector products by double backward: one forward and one ``create_graph`` backward
  give ``g = nabla_alpha L``; each product ``H v = nabla_alpha (g . v)`` is then one more backward
  through that retained graph (no new forward);
* the Lanczos method (with full reorthogonalization) on those products, stopped when the
  residual of the top Ritz pair is below ``tol * |lambda|``: it returns the largest *algebraic*
  eigenvalue, as the RobustDARTS release's ``max(eigvals(H))`` does (power iteration would
  return the largest in magnitude, which a strongly negative direction could take).

Noise and randomness: with NoisyDARTS the loss is random. Every evaluation runs under a fixed
seed (``torch.random.fork_rng``), so ``H`` is one fixed symmetric matrix for all Lanczos
iterations (and the same noise sample from epoch to epoch); the search's own random stream is
untouched. ``monitor.hessian_noise: false`` switches the noise off for the measurement instead.
The measurement leaves no trace in the search: BatchNorm running statistics are restored, no
``.grad`` is written, the RNG is forked, and it runs in full precision (no autocast).

Under torchrun the monitor runs on every rank (its forward passes take part in SyncBatchNorm's
and the global-σ noise's collectives, which every rank must join): rank ``r`` evaluates its
slice of each measured batch, with its loss weighted by its share ``n_r / N`` of the global
batch, so that the sum over ranks is the global batch's mean loss, exactly, SyncBatchNorm and
global σ included (their all-reduces are part of the one graph over all ranks, and the
double-backward passes through them). Each Hessian-vector product is then summed over ranks:
every rank gets the global ``H v``, runs the same Lanczos steps on it and logs the same
eigenvalue (rank 0's decisions to stop and its estimate are handed to the others, so a rounding
difference between machines cannot make the ranks disagree). Each rank draws its own noise
(seed :func:`noisydarts.runtime.distributed.rank_seed`), as in the search.
"""

from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from .. import config
from ..nn import compiling
from ..nn.supernet import search_loss
from ..runtime import distributed
from ..runtime.callbacks import Callback

#: Seeds of the monitor's noise and Lanczos start vector: fixed per run (offset by the run's seed).
_SEED_OFFSET = 0x5EED


def _flatten(tensors, like) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(tensors, like)])


@contextlib.contextmanager
def _untouched(model, noise: bool, devices):
    """Run a measurement in training mode and leave the model as it was: BatchNorm running
    statistics restored, the global RNG forked, the train/eval mode and the noise switch reset."""
    buffers = [b.detach().clone() for b in model.buffers()]
    # The weights are constants here: no graph edges to them, no weight-gradient kernels.
    weights = [p for p in model.weight_parameters() if p.requires_grad] if hasattr(model, "weight_parameters") else []
    training = model.training
    noise_module = getattr(model, "noise", None)
    noise_training = noise_module.training if noise_module is not None else None
    try:
        with torch.random.fork_rng(devices=devices):
            for p in weights:
                p.requires_grad_(False)
            model.train()
            if noise_module is not None and not noise:
                noise_module.train(False)
            yield
    finally:
        for p in weights:
            p.requires_grad_(True)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        model.train(training)
        if noise_module is not None:
            noise_module.train(noise_training)


class _GroupedConv2d(torch.autograd.Function):
    """A grouped conv whose input gradient is a transposed conv. Differentiating that again (a
    Hessian-vector product) is then one grouped conv; autograd's own double backward of a grouped
    conv loops over the groups in Python-free but per-group kernels (one conv per channel of a
    depthwise conv, ~60 % of a product's time on CPU). Same numbers, only faster."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, groups)
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            k = weight.shape[2:]
            extra = [x.shape[2 + i] - ((grad.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1)
                     for i in range(2)]
            grad_x = F.conv_transpose2d(grad, weight, None, stride, padding, extra, groups, dilation)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False, [0, 0],
                                                         groups, [False, True, False])[1]
        return grad_x, grad_w, None, None, None, None


class _HessianFriendlyConvs(TorchFunctionMode):
    """Route grouped ``conv2d`` calls (depthwise convs) through :class:`_GroupedConv2d`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            call = dict(zip(names, args)) | kwargs
            groups, padding = call.get("groups", 1), call.get("padding", 0)
            if groups > 1 and call.get("bias") is None and not isinstance(padding, str):
                return _GroupedConv2d.apply(call["input"], call["weight"], _pair(call.get("stride", 1)), _pair(padding),
                                            _pair(call.get("dilation", 1)), groups)
        return func(*args, **kwargs)


def hessian_operator(model, batches, loss_fn, seed: int = 0, *, weights=None, reduce=None):
    """``(matvec, dim)``: ``matvec(v)`` = ``H v`` for a flat float64 CPU vector ``v``, where ``H`` is
    the Hessian w.r.t. ``model.arch_parameters()`` of the mean of ``loss_fn(model, x, y)`` over
    ``batches``. Batch ``i`` is evaluated under the seed ``seed + i`` (the same noise sample in
    every product). Call inside :func:`_untouched` (or accept that BatchNorm statistics move).
    Under torchrun: ``weights[i]`` is this rank's share of batch ``i`` (its loss is weighted by
    it) and ``reduce`` sums each product over the ranks (in place)."""
    params = model.arch_parameters()
    total = None
    # Double backward: compiled regions (``compile``) run eagerly here.
    with _HessianFriendlyConvs(), compiling.eager():
        for i, (x, y) in enumerate(batches):
            torch.manual_seed(seed + i)
            loss = loss_fn(model, x, y)
            loss = loss / len(batches) if weights is None else loss * (weights[i] / len(batches))
            total = loss if total is None else total + loss
    grads = torch.autograd.grad(total, params, create_graph=True, allow_unused=True)
    used = [(g, p) for g, p in zip(grads, params) if g is not None]
    sizes = [p.numel() for p in params]
    dim = sum(sizes)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        if not used:  # no architecture parameter reaches the loss (on every rank alike)
            return torch.zeros(dim, dtype=torch.float64)
        parts = v.to(device=params[0].device, dtype=params[0].dtype).split(sizes)
        vs = [part.view_as(p) for part, p, g in zip(parts, params, grads) if g is not None]
        # sum_i v_i . d g_i / d alpha = H v (H is symmetric): one backward through g's graph.
        hv = torch.autograd.grad([g for g, _ in used], params, grad_outputs=vs, retain_graph=True, allow_unused=True)
        flat = _flatten(hv, params).detach()
        if reduce is not None:
            flat = reduce(flat)
        return flat.to(device="cpu", dtype=torch.float64)

    return matvec, dim


class Estimate(NamedTuple):
    value: float             # the largest eigenvalue (the top Ritz value)
    products: int            # Hessian-vector products used
    vector: torch.Tensor     # its Ritz vector (unit norm, float64, CPU): a warm start for the next estimate


def lanczos_max_eigenvalue(matvec, dim: int, iterations: int = 20, tol: float = 1e-2, seed: int = 0,
                           start: torch.Tensor | None = None, agree=None) -> Estimate:
    """Largest eigenvalue of the symmetric operator ``matvec`` (``dim`` x ``dim``) by Lanczos with
    full reorthogonalization. Stops when the top Ritz pair's residual ``|beta_j s_j|`` is at most
    ``tol * |theta|`` (then ``|theta - lambda_max|`` is at most that too), when the Krylov space
    is exhausted (exact), or after ``iterations``. ``start``: a start vector (e.g. the previous
    estimate's Ritz vector); a seeded random 10 % is mixed in, so that it is never confined to
    an invariant subspace that misses the top eigenvector. ``agree(flag) -> flag``: the decision to
    stop made the same in every process that runs this in step (rank 0's, under torchrun)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=gen, dtype=torch.float64)
    q = q / q.norm()
    if start is not None and start.numel() == dim and float(start.norm()) > 0:
        q = start.to(torch.float64) / start.norm() + 0.1 * q
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(min(iterations, dim)):
        w = matvec(basis[j])
        alphas.append(float(w @ basis[j]))
        Q = torch.stack(basis)
        for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
            w = w - Q.T @ (Q @ w)
        beta = float(w.norm())
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        values, vectors = torch.linalg.eigh(T)
        theta, s = float(values[-1]), vectors[:, -1]
        residual = beta * abs(float(s[-1]))
        done = residual <= tol * max(abs(theta), 1e-12) or beta <= 1e-12 * max(abs(theta), 1.0)
        if agree is not None:
            done = agree(done)
        if done or j + 1 == min(iterations, dim):
            ritz = Q.T @ s
            return Estimate(theta, j + 1, ritz / ritz.norm())
        betas.append(beta)
        basis.append(w / max(beta, 1e-300))  # beta ~ 0 only when another rank's decision continues
    raise AssertionError("unreachable")


def dominant_eigenvalue(model, batches, loss_fn, *, iterations: int = 20, tol: float = 1e-2,
                        seed: int = 0, noise: bool = True, start: torch.Tensor | None = None,
                        shares: list[float] | None = None) -> Estimate:
    """The largest eigenvalue of ``nabla^2_alpha`` of the mean loss over ``batches`` (with the
    Hessian-vector products used and the Ritz vector), measured without a trace on the model or
    the RNG (see the module docstring); ``start``: a warm start (a previous estimate's vector).

    Under torchrun every rank calls it with its slices of the same batches (``shares[i]``: this
    rank's fraction of batch ``i``'s images, :func:`slice_shares`); all ranks return rank 0's
    estimate of the global batches' Hessian (the module docstring)."""
    devices = [x.device for x, _ in batches[:1] if x.device.type == "cuda"]
    if not distributed.active():
        with _untouched(model, noise, devices):
            matvec, dim = hessian_operator(model, batches, loss_fn, seed=seed)
            return lanczos_max_eigenvalue(matvec, dim, iterations, tol, seed=seed, start=start)
    if shares is None:
        shares = slice_shares([len(y) for _, y in batches])
    with _untouched(model, noise, devices):
        matvec, dim = hessian_operator(model, batches, loss_fn, seed=distributed.rank_seed(seed, distributed.rank()),
                                       weights=shares, reduce=distributed.all_reduce_sum)
        estimate = lanczos_max_eigenvalue(matvec, dim, iterations, tol, seed=seed, start=start,
                                          agree=lambda done: distributed.on_main(lambda: done))
    return distributed.on_main(lambda: estimate)  # bit for bit rank 0's on every rank


def slice_shares(sizes: list[int]) -> list[float]:
    """This rank's fraction ``n_r / N`` of each global batch, from its slices' ``sizes`` (one
    collective; ``[1.0, ...]`` in a single process)."""
    if not distributed.active():
        return [1.0] * len(sizes)
    totals = distributed.sum_over_ranks(sizes) if sizes else []
    return [n / total for n, total in zip(sizes, totals)]


class HessianMonitor(Callback):
    """A search callback (``monitor.hessian_every: N``): after epochs 1, 1 + N, 1 + 2N, ... and the
    last (1-based; the RobustDARTS release measures at its 0-based epochs 0, N, 2N, ... and the last,
    ``train_search.py``: ``epoch % report_freq_hessian == 0``), the
    dominant eigenvalue of the architecture Hessian on the first ``monitor.hessian_batches``
    search-val batches (unaugmented, in a fixed order: the same images every time; cut to
    ``monitor.hessian_batch_size`` images each when set), logged as
    ``hessian_eig`` (with ``hessian_products`` and ``hessian_time`` in seconds) in metrics.jsonl.
    Each estimate starts Lanczos from the previous one's Ritz vector (the Hessian moves little from
    one measurement to the next, so it converges in fewer products); the vector is part of the
    checkpoint (``state_dict``), so a resumed search measures exactly as an uninterrupted one.

    Under torchrun it runs on every rank (``runs_on_every_rank``): each measures on its slices of
    the batches and all log the same eigenvalue, that of the global batches (module docstring).
    ``monitor.hessian_batch_size`` is then the size of the global batch: each rank keeps its
    ``1 / world`` of it."""

    runs_on_every_rank = True  # forward passes with SyncBatchNorm / global-σ collectives in them

    def __init__(self, cfg: dict):
        m = cfg["monitor"]
        self.every, self.num_batches, self.batch_size = m["hessian_every"], m["hessian_batches"], m["hessian_batch_size"]
        self.iterations, self.tol, self.noise = m["hessian_iterations"], m["hessian_tol"], m["hessian_noise"]
        self.epochs, self.seed = cfg["epochs"], cfg["seed"] + _SEED_OFFSET
        self.batches, self.vector, self.shares = None, None, None

    def state_dict(self) -> dict:
        return {"vector": self.vector}

    def load_state_dict(self, state: dict) -> None:
        self.vector = state.get("vector")

    def on_start(self, searcher) -> None:
        world = distributed.world_size() if distributed.active() else 1
        keep = max(1, self.batch_size // world) if self.batch_size else None  # this rank's part of it
        batches = []
        for x, y in searcher.val_batches.epoch(0):
            batches.append((x[:keep], y[:keep]) if keep else (x, y))
            if len(batches) == self.num_batches:
                break
        if distributed.active():  # the same number of batches, each with images, on every rank
            counts = distributed.all_gather_object([len(y) for _, y in batches])
            usable = 0
            while usable < min(map(len, counts)) and all(c[usable] > 0 for c in counts):
                usable += 1
            batches = batches[:usable]
        self.batches = batches
        self.shares = slice_shares([len(y) for _, y in batches])

    def on_record(self, searcher, record: dict) -> None:
        epoch = record["epoch"]
        if (epoch - 1) % self.every and epoch != self.epochs:
            return
        t0 = time.perf_counter()
        estimate = dominant_eigenvalue(searcher.model, self.batches, search_loss, iterations=self.iterations,
                                       tol=self.tol, seed=self.seed, noise=self.noise, start=self.vector,
                                       shares=self.shares)
        self.vector = estimate.vector
        record["hessian_eig"] = estimate.value
        record["hessian_products"] = estimate.products
        record["hessian_time"] = round(time.perf_counter() - t0, 3)


# --- config --------------------------------------------------------------------------------------

#: The ``monitor`` config section: measurements during the search.
DEFAULTS: dict = {
    "hessian_every": 0,          # dominant eigenvalue of the alpha Hessian after epochs 1, 1+N, 1+2N, ... and the last (0 = off)
    "hessian_batches": 1,        # fixed search-val batches it is measured on
    "hessian_batch_size": None,  # their size (null = batch_size); smaller saves memory, changes L_val's BN
    "hessian_iterations": 20,    # at most this many Lanczos steps (Hessian-vector products)
    "hessian_tol": 1.0e-2,       # relative residual at which Lanczos stops (bounds the relative error)
    "hessian_noise": True,       # NoisyDARTS noise on in the measured loss (with a fixed seed)
}


def validate(cfg: dict) -> None:
    m = cfg["monitor"]
    config.check(m["hessian_every"] >= 0, f"monitor.hessian_every must be >= 0 (0 = off), got {m['hessian_every']}")
    config.check(m["hessian_batches"] >= 1, f"monitor.hessian_batches must be at least 1, got {m['hessian_batches']}")
    config.check(m["hessian_batch_size"] is None or m["hessian_batch_size"] >= 2,
                 "monitor.hessian_batch_size must be null (the search's batch size) or at least 2, "
                 f"got {m['hessian_batch_size']}")
    config.check(m["hessian_iterations"] >= 1, f"monitor.hessian_iterations must be at least 1, got {m['hessian_iterations']}")
    config.check(m["hessian_tol"] > 0, f"monitor.hessian_tol must be > 0, got {m['hessian_tol']}")


config.SEARCH.register("monitor", DEFAULTS, validate=validate, nullable={"hessian_batch_size": int}, owner=__name__)

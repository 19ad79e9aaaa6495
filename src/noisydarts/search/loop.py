"""The bilevel search loop, its run directory, checkpoints and resume.

Each step (Algorithm 1 of NoisyDARTS, in the order of the DARTS release):

1. architecture step on a search-val batch: the configured estimator fills ``alpha.grad``,
   the configured gradient transforms change it (none by default; see
   :mod:`noisydarts.methods.gradients`), then Adam updates alpha (skipped during ``warmup_epochs``);
2. weight step on a search-train batch: SGD with momentum, cosine learning rate, gradient
   clipping.

The NoisyDARTS noise, partial channels, edge normalization and the choice of estimator are all
inside the supernet and the estimator; the loop below is the same for every method and space.

Run directory: ``config.yaml`` (fully resolved, plus the run's ``provenance``), ``metrics.jsonl``
(a line per epoch), ``checkpoint.pt`` (everything needed to continue; written atomically after
every epoch) and, at the end, ``genotype.json``. While a process writes the run it holds
``.lock`` (:class:`noisydarts.runtime.runs.RunLock`); an epoch that leaves anything non-finite stops the
run before it is written (:mod:`noisydarts.runtime.guard`).
"""

from __future__ import annotations

import collections
import functools
import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config as config_lib
from ..nn import compiling, recompute
from ..runtime import distributed, guard, runs
from ..runtime.callbacks import as_callback, for_rank
from ..data import make_batches, open_dataset, split_indices
from ..data.record import DATA_RECORD, data_line, data_record
from ..errors import UserError
from ..methods.estimators import StepContext, build_estimator
from ..methods.gradients import build_gradient_transform
from ..methods.noise import SkipNoise
from ..methods.perturbation import build_weight_perturbation
from ..runtime.device import autocast, precision
from ..runtime.progress import progress_bar
from ..runtime.rng import checkpoint_rng, restore_rng, seed_everything
from ..runtime.runs import CHECKPOINT, append_jsonl, atomic_torch_save, atomic_write_text, read_jsonl
from ..nn.supernet import search_loss
from ..spaces import genotype_payload, get_space

DEFAULT_PRESET = config_lib.DEFAULT_PRESET


@dataclass
class SearchResult:
    genotype: object                       # the space's genotype type (see noisydarts.spaces)
    alpha_history: list[dict] = field(default_factory=list)  # per epoch: {cell type: [[w]]}
    run_dir: Path | None = None
    metrics: list[dict] = field(default_factory=list)
    stopped: dict | None = None            # why a callback ended the search early (None: it ran to the end)


#: The search loss (kept under its old name for callers of ``noisydarts.search``).
cross_entropy = search_loss


# --- the searcher -----------------------------------------------------------------------------

class Searcher:
    """Holds everything a search needs; :func:`search` is the function to call."""

    #: True while :meth:`run` replays the stage hooks of the epochs a resumed run had done.
    replaying: bool = False
    #: Set by a stage hook in ``on_epoch_start`` to keep α frozen for that epoch (DrNAS freezes it at
    #: the start of every stage, as ``warmup_epochs`` does at the start of the search); reset before
    #: every epoch's hooks.
    freeze_arch: bool = False
    _resume: dict | None = None  # the checkpoint to continue from (load_state_dict), loaded in run()

    def __init__(self, cfg: dict, run_dir: Path, progress: bool = True):
        self.cfg, self.run_dir = cfg, run_dir
        self.device = distributed.setup(cfg)  # this rank's device; under torchrun, the process group
        self.rank, self.world = distributed.shard()
        self.progress = progress and self.rank == 0
        seed_everything(cfg["seed"])
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        data = cfg["data"]
        dataset = open_dataset(data, "train", self.device)  # in memory on the device, or streamed from disk
        if len(dataset.classes) < 2:
            raise UserError(f"dataset {data['name']} has {len(dataset.classes)} class: a search needs at least 2")
        indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg["seed"]))
        if data["limit"] is not None:
            indices = indices[: data["limit"]]
        train_part, val_part = split_indices(len(indices), cfg["train_portion"], cfg["seed"])
        train_idx, val_idx = indices[train_part], indices[val_part]
        if min(len(train_idx), len(val_idx)) < 1:
            raise UserError("the training set is too small to split into search-train and search-val halves")
        self.dataset = dataset
        self.data_record = data_record(data, dataset)
        self.images_used = len(indices)  # data.limit's sample, or the whole training split
        # Under torchrun, every rank draws the same global batches and keeps its slice.
        batches = functools.partial(make_batches, dataset, batch_size=cfg["batch_size"], data=data,
                                    channels_last=cfg["channels_last"], device=self.device,
                                    shard=(self.rank, self.world))
        self.train_batches = batches(train_idx, seed=cfg["seed"], train=True)
        # The val half feeds the architecture steps (shuffled and augmented as in DARTS) and,
        # unaugmented in a fixed order, the end-of-epoch validation.
        self.arch_batches = batches(val_idx, seed=cfg["seed"] + 1, train=True)
        self.val_batches = batches(val_idx, seed=cfg["seed"], train=False)

        self.space = get_space(cfg)
        self.model = self.space.build_supernet(cfg, len(dataset.classes), dataset.channels).to(self.device)
        self.model.set_search_data(len(train_idx), len(val_idx))
        if cfg["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._distribute(cfg["distributed"])
        compiling.compile_regions(self.model, cfg["compile"])  # after SyncBatchNorm replaced modules
        w, a = cfg["weights"], cfg["arch"]
        self.w_opt = torch.optim.SGD(self.model.weight_parameters(), w["lr"], momentum=w["momentum"],
                                     weight_decay=w["weight_decay"])
        self.a_opt = torch.optim.Adam(self.model.arch_param_groups(), a["lr"], betas=tuple(a["betas"]),
                                      weight_decay=a["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, cfg["epochs"], eta_min=w["lr_min"])
        self.estimator = build_estimator(cfg)
        self.grad_transform = build_gradient_transform(cfg, self.model)
        self.perturbation = build_weight_perturbation(cfg)  # around the weight step (SDARTS); a no-op by default
        self.start_epoch = 0
        self.preset: str | None = None   # for the start-of-run line only
        self.stopped: dict | None = None  # set when a callback stops the search (early stopping)
        self.callbacks = ()               # the running search's callbacks (their state is checkpointed)
        self.callback_states: dict = {}   # their state from a checkpoint, handed back in run()

    def _distribute(self, options: dict) -> None:
        """Under torchrun: SyncBatchNorm if asked, σ over all ranks if asked, every rank starting
        from rank 0's α and weights, and a global generator of its own on every rank but 0."""
        if self.world == 1:
            return
        if options["sync_bn"]:
            self.model = distributed.convert_sync_batchnorm(self.model)
        if options["noise_std"] == "global":
            for module in self.model.modules():
                if isinstance(module, SkipNoise):  # also inside the release's drop-path wrapper
                    module.std_fn = distributed.global_std
        distributed.broadcast_module(self.model)
        seed_everything(distributed.rank_seed(self.cfg["seed"], self.rank))

    def step_context(self, lr: float) -> StepContext:
        return StepContext(loss_fn=cross_entropy, weight_optimizer=self.w_opt, weight_lr=lr,
                           all_reduce=distributed.all_reduce_mean if self.world > 1 else None)

    # --- checkpoints ---
    def state_dict(self, next_epoch: int) -> dict:
        """Everything a resume needs. Under torchrun every rank must call it (the RNG states of all
        ranks are gathered); rank 0 writes it."""
        return {"epoch": next_epoch, "model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "scheduler": self.scheduler.state_dict(), **checkpoint_rng(),
                "world_size": self.world, "estimator": getattr(self.estimator, "state_dict", dict)(),
                "stopped": self.stopped, "grad_transform": self.grad_transform.state_dict(),
                "callbacks": {_state_key(cb): cb.state_dict() for cb in self.callbacks if as_callback(cb).has_state}}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint (``search --resume``). The epoch, the stop and the callbacks'
        states are taken at once; the tensors (supernet, optimizers, schedule, estimator, gradient
        transform, RNG) at the start of :meth:`run`, once the stage hooks have rebuilt the supernet
        of the epochs already done (:mod:`noisydarts.runtime.callbacks`); a checkpoint that does not
        fit the config is then one :class:`UserError` line."""
        self.start_epoch = state["epoch"]
        self.stopped = state.get("stopped")
        self.callback_states = state.get("callbacks", {})
        self._resume = state

    def _restore(self, callbacks) -> None:
        """Replay the stage hooks of the epochs done (in order), then load the checkpoint's tensors."""
        state, self._resume = self._resume, None
        self.replaying = True
        try:
            for epoch in range(self.start_epoch):
                for cb in callbacks:
                    cb.on_epoch_start(self, epoch)
        finally:
            self.replaying = False
        self.refresh_optimizers()
        with runs.restoring(self.run_dir):
            self.model.load_state_dict(state["model"])
            self.w_opt.load_state_dict(state["w_opt"])
            self.a_opt.load_state_dict(state["a_opt"])
            self.scheduler.load_state_dict(state["scheduler"])
            if hasattr(self.estimator, "load_state_dict"):
                self.estimator.load_state_dict(state.get("estimator", {}))
            self.grad_transform.load_state_dict(state.get("grad_transform", {}))
        restore_rng(state, self.cfg["seed"])

    def refresh_optimizers(self) -> bool:
        """The optimizers' parameter groups rebuilt from ``self.model`` if its weight or architecture
        parameters changed (compared by identity; a stage hook pruned an op, say). Parameters that
        remain keep their optimizer state (SGD momentum, Adam moments) and their group's settings
        (the current learning rate: the schedule goes on), new ones start without state, removed
        ones are dropped. Returns whether anything changed. Under torchrun every rank calls it (the
        loop does, before every epoch): it checks that all ranks hold the same parameters."""
        changed = False
        for opt, groups in ((self.w_opt, [{"params": self.model.weight_parameters()}]),
                            (self.a_opt, self.model.arch_param_groups())):
            changed |= _regroup(opt, groups)
        if self.world > 1:
            shapes = [tuple(p.shape) for opt in (self.w_opt, self.a_opt) for g in opt.param_groups for p in g["params"]]
            if len(set(distributed.all_gather_object(zlib.crc32(repr(shapes).encode())))) > 1:
                raise UserError("the supernet's parameters differ between the ranks: a callback that changes the "
                                "supernet (on_epoch_start) must run on every rank (runs_on_every_rank = True)")
        return changed

    # --- one epoch ---
    def train_epoch(self, epoch: int) -> dict:
        cfg, model = self.cfg, self.model
        model.train()
        model.set_epoch(epoch, cfg["epochs"])
        self.perturbation.set_epoch(epoch, cfg["epochs"])
        lr = self.scheduler.get_last_lr()[0]
        ctx = self.step_context(lr)
        update_arch = epoch >= cfg["warmup_epochs"] and not self.freeze_arch
        weights = self.model.weight_parameters()
        amp = autocast(cfg, self.device)
        # Running sums stay on the device: no per-step host sync.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        arch_iter = _cycle(self.arch_batches, epoch)
        bar = progress_bar(len(self.train_batches), f"epoch {epoch + 1}/{cfg['epochs']}", self.progress)
        for step, (x, y) in enumerate(self.train_batches.epoch(epoch)):
            val_batch = next(arch_iter) if update_arch else None
            loss, logits = self.search_step((x, y), val_batch, ctx, weights, amp)
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step == len(self.train_batches) - 1:
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{100 * correct.item() / seen:.1f}")
        if bar is not None:
            bar.close()
        self.scheduler.step()
        if self.world > 1:
            if not self.cfg["distributed"]["sync_bn"]:
                distributed.average_buffers(model)  # BN running statistics: the same on every rank
            loss_total, correct_total, seen = distributed.sum_over_ranks([loss_sum, correct, seen])
            return {"train_loss": loss_total / max(seen, 1), "train_acc": 100.0 * correct_total / max(seen, 1), "lr": lr}
        return {"train_loss": loss_sum.item() / max(seen, 1), "train_acc": 100.0 * correct.item() / max(seen, 1),
                "lr": lr}

    def search_step(self, train_batch, val_batch, ctx: StepContext, weights, amp):
        """One bilevel step: an architecture step on ``val_batch`` (None: alpha stays frozen),
        then a weight step on ``train_batch``. Returns the weight step's loss and logits."""
        model = self.model
        model.begin_step()  # per-iteration state shared by both steps (SI-VDNAS' masks)
        if val_batch is not None:
            model.set_phase("arch")
            self.a_opt.zero_grad(set_to_none=True)
            with amp:
                self.estimator.step(model, train_batch, val_batch, ctx)
            self.grad_transform(model)  # e.g. gradient projection between edges; nothing by default
            self.a_opt.step()
        x, y = train_batch
        model.set_phase("weights")
        self.w_opt.zero_grad(set_to_none=True)
        # Gradients for the weights only: alpha frozen, so autograd neither computes nor keeps
        # what only alpha's gradient needs (every op's output on every mixed edge). The weight-step
        # perturbation (SDARTS) sets the op weights' perturbation for this forward and backward only.
        with recompute.frozen(model.arch_parameters()), self.perturbation.weight_step(model, x, y, amp):
            with amp:
                loss, logits = model.training_loss(x, y)
            torch.autograd.backward(loss, inputs=weights)
        if self.world > 1:  # the global batch's mean gradient, the same on every rank
            for w, g in zip(weights, distributed.all_reduce_mean([w.grad for w in weights], len(y))):
                w.grad = g
        if self.cfg["weights"]["grad_clip"]:
            nn.utils.clip_grad_norm_(weights, self.cfg["weights"]["grad_clip"])
        self.w_opt.step()
        return loss, logits

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        with autocast(self.cfg, self.device):
            for x, y in self.val_batches.epoch(0):
                logits = self.model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
        if self.world > 1:  # each rank validated its slices
            loss_total, correct_total, seen = distributed.sum_over_ranks([loss_sum, correct, seen])
            return {"val_loss": loss_total / seen, "val_acc": 100.0 * correct_total / seen}
        return {"val_loss": loss_sum.item() / seen, "val_acc": 100.0 * correct.item() / seen}

    def epoch_record(self, epoch: int, train: dict, val: dict, seconds: float) -> dict:
        genotype = self.model.genotype()
        alpha = {k: [[round(float(v), 6) for v in row] for row in w.tolist()]
                 for k, w in self.model.arch_weights().items()}
        return {"epoch": epoch + 1, **train, **val, "epoch_time": round(seconds, 3), "alpha": alpha,
                "genotype": str(genotype), **self.space.genotype_metrics(genotype), **self.model.epoch_metrics()}

    def check_finite(self, epoch: int, logged: dict) -> None:
        """The divergence guard (:mod:`noisydarts.runtime.guard`): before anything of the epoch is written."""
        guard.check_epoch(epoch + 1, self.run_dir, "search", {k: logged[k] for k in ("train_loss", "val_loss")},
                          {"alpha": self.model.arch_parameters(),
                           "weights": [t for name, t in self.model.state_dict().items() if not name.startswith("arch.")],
                           "optimizer state": guard.optimizer_tensors(self.w_opt, self.a_opt)},
                          hint="lower weights.lr, arch.lr or noise.lambda",
                          agree=distributed.agree_nonfinite if self.world > 1 else None)

    def run(self, stop_after: int | None = None, callbacks=()) -> SearchResult:
        """Train until ``stop_after`` (or all) epochs are done, or until a callback stops the search.

        ``callbacks``: :class:`noisydarts.runtime.callbacks.Callback` objects (the contract, in
        full, is that module's docstring), or objects with some of its methods (wrapped by
        :func:`~noisydarts.runtime.callbacks.as_callback`). On resume (after :meth:`load_state_dict`)
        their ``on_epoch_start`` is first replayed for the epochs already done, then the
        checkpoint's tensors are loaded, then each callback's state. Then ``on_start(searcher)``
        once; per epoch ``on_epoch_start(searcher, epoch)`` (a stage hook; if it changed the
        supernet's parameters, :meth:`refresh_optimizers` carries the optimizer state over),
        training and validation, ``on_record(searcher, record)`` (monitors add their measurements
        to the record), ``check_stop(history) -> Stop | None`` with every record so far, the
        record logged and the checkpoint written (with every callback's ``state_dict()``),
        ``on_epoch(record, run_dir)``; ``on_end(result)`` at the end (also when interrupted on
        purpose or stopped early). A stop ends the loop after that epoch: the record, the
        checkpoint and genotype.json say why, and genotype.json holds that epoch's architecture.

        Under torchrun: rank 0 runs every callback; the other ranks only those with
        ``runs_on_every_rank`` (forward passes, collectives, changes to the supernet), and only
        their ``on_epoch_start``, ``on_start`` and ``on_record`` hooks (``check_stop``, ``on_epoch``
        and ``on_end`` run on rank 0 only: its stop decision is handed to every rank)."""
        cfg, metrics_path = self.cfg, self.run_dir / "metrics.jsonl"
        last = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after)
        main = self.rank == 0  # under torchrun, rank 0 alone writes the run directory and prints
        self.callbacks = callbacks = for_rank(callbacks, self.rank)
        if self._resume is not None:
            self._restore(callbacks)
        for cb in callbacks:
            if cb.has_state and cb.state_key in self.callback_states:
                cb.load_state_dict(self.callback_states[cb.state_key])
            cb.on_start(self)
        history = read_jsonl(metrics_path) if main else []  # the epochs already done (a resumed run's)
        if self.progress:
            print(runs.start_line("search", self.device, precision(cfg, self.device), self.run_dir, self.preset,
                                  resumed_at=self.start_epoch or None, world=self.world), flush=True)
            print(data_line(cfg["data"], ("train",), self.images_used), flush=True)
        for epoch in range(self.start_epoch, last):
            if self.stopped is not None:
                break
            self.freeze_arch = False
            for cb in callbacks:
                cb.on_epoch_start(self, epoch)
            self.refresh_optimizers()
            t0 = time.perf_counter()
            train = self.train_epoch(epoch)
            val = self.validate()
            self.check_finite(epoch, {**train, **val})
            record = self.epoch_record(epoch, train, val, time.perf_counter() - t0)
            for cb in callbacks:
                cb.on_record(self, record)
            history.append(record)
            # Rank 0 decides for all (the rules run there only): every rank stops alike.
            stop = distributed.on_main(_first_stop, callbacks, history)
            if stop is not None:
                self.stopped = record["stopped"] = stop
            state = self.state_dict(epoch + 1)  # on every rank: it gathers their RNG states
            if not main:
                continue
            if not (self.run_dir / DATA_RECORD).is_file():  # with the first checkpoint: the run's data, resolved
                atomic_write_text(self.run_dir / DATA_RECORD, json.dumps(self.data_record, indent=1) + "\n")
            append_jsonl(metrics_path, record)
            atomic_torch_save(state, self.run_dir / CHECKPOINT)
            if self.progress:
                print(summary_line(record), flush=True)
                if self.stopped is not None:
                    print(f"early stop after epoch {record['epoch']}: {self.stopped['reason']}", flush=True)
            for cb in callbacks:
                cb.on_epoch(record, self.run_dir)
        genotype = self.model.genotype()
        if not main:  # α is rank 0's, bit for bit: the same genotype; the run directory is rank 0's
            return SearchResult(genotype=genotype, run_dir=self.run_dir, stopped=self.stopped)
        metrics = read_jsonl(metrics_path)
        if last == cfg["epochs"] or self.stopped is not None:
            payload = {**genotype_payload(genotype), **self.space.genotype_metrics(genotype), "epochs": len(metrics)}
            if self.stopped is not None:
                payload["stopped"] = self.stopped
            atomic_write_text(self.run_dir / "genotype.json", json.dumps(payload, indent=1) + "\n")
        result = SearchResult(genotype=genotype, alpha_history=[m["alpha"] for m in metrics],
                              run_dir=self.run_dir, metrics=metrics, stopped=self.stopped)
        for cb in callbacks:
            cb.on_end(result)
        return result


def _first_stop(callbacks, history: list[dict]) -> dict | None:
    """The first callback's stop (as a dict), None if none stops."""
    stops = (cb.check_stop(history) for cb in callbacks)
    return next((s.to_dict() for s in stops if s is not None), None)


def _regroup(opt: torch.optim.Optimizer, groups: list[dict]) -> bool:
    """``opt``'s parameter groups replaced by ``groups`` (each with the settings of the old group at
    its place, overridden by its own), if their parameters differ; the state of the parameters
    that remain is kept (the same objects). Returns whether it changed anything."""
    if [[id(p) for p in g["params"]] for g in opt.param_groups] == [[id(p) for p in g["params"]] for g in groups]:
        return False
    old_groups, old_state = opt.param_groups, opt.state
    opt.param_groups, opt.state = [], collections.defaultdict(dict)
    for i, group in enumerate(groups):
        settings = {k: v for k, v in old_groups[min(i, len(old_groups) - 1)].items() if k != "params"}
        opt.add_param_group({**settings, **group})
    for group in opt.param_groups:
        for p in group["params"]:
            if p in old_state:
                opt.state[p] = old_state[p]
    return True


def _state_key(callback) -> str:
    """The key of a callback's state in the checkpoint: its ``state_key``, by default its class
    name (an old-style callback's own class name, as checkpoints always had it)."""
    return as_callback(callback).state_key


def summary_line(r: dict) -> str:
    extra = "".join(f" {k}={r[k]}" for k in ("skip_normal", "skip_reduce", "skip_count") if k in r)
    # Spaces with a ground-truth table (NAS-Bench-201) log the derived cell's test accuracies.
    bench = [f"{name} {r[k]:.2f}" for k, name in (("cifar10_test", "C10"), ("cifar100_test", "C100"),
                                                  ("imagenet16_test", "IN16")) if k in r]
    if bench:
        extra += " | NB201 test " + " ".join(bench)
    return (f"epoch {r['epoch']}: train loss {r['train_loss']:.3f} acc {r['train_acc']:.1f} | "
            f"val loss {r['val_loss']:.3f} acc {r['val_acc']:.1f} | {r['epoch_time']:.1f}s{extra}\n  {r['genotype']}")


def _cycle(batches, epoch: int):
    """Architecture batches for one epoch; if the val half is the smaller one, start it over
    (with a fresh order) rather than stop the epoch early."""
    round_ = 0
    while True:
        yield from batches.epoch(epoch + 100_000 * round_)
        round_ += 1

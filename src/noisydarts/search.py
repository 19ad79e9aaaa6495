"""The bilevel search loop, its run directory, checkpoints and resume.

Each step (Algorithm 1 of NoisyDARTS, in the order of the DARTS release):

1. architecture step on a search-val batch: the configured estimator fills ``alpha.grad``,
   then Adam updates alpha (skipped during ``warmup_epochs``);
2. weight step on a search-train batch: SGD with momentum, cosine learning rate, gradient
   clipping.

The NoisyDARTS noise, partial channels, edge normalization and the choice of estimator are all
inside the supernet and the estimator; the loop below is the same for every method and space.

Run directory: ``config.yaml`` (fully resolved), ``metrics.jsonl`` (a line per epoch),
``checkpoint.pt`` (everything needed to continue; written atomically after every epoch) and,
at the end, ``genotype.json``.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from . import config as config_lib
from .callbacks import default_callbacks
from .data import BatchIterator, load_dataset, split_indices
from .errors import UserError
from .estimators import StepContext, build_estimator
from .runs import append_jsonl, atomic_torch_save, atomic_write_text, new_run_dir, read_jsonl
from .spaces import build_supernet

CHECKPOINT = "checkpoint.pt"
DEFAULT_PRESET = config_lib.DEFAULT_PRESET


@dataclass
class SearchResult:
    genotype: object                       # Genotype (DARTS space) or the space's own type
    alpha_history: list[dict] = field(default_factory=list)  # per epoch: {cell type: [[w]]}
    run_dir: Path | None = None
    metrics: list[dict] = field(default_factory=list)


# --- setup helpers ----------------------------------------------------------------------------

def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available: use --set device=cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def autocast(cfg: dict, device: torch.device):
    """bf16 autocast on CUDA (``amp: auto`` or ``on``); full precision on CPU."""
    if device.type == "cuda" and cfg["amp"] in ("auto", "on"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The search loss (the supernet's ``training_loss``: cross entropy, plus an auxiliary head's)."""
    return model.training_loss(x, y)[0]


# --- the searcher -----------------------------------------------------------------------------

class Searcher:
    """Holds everything a search needs; :func:`search` is the function to call."""

    def __init__(self, cfg: dict, run_dir: Path, progress: bool = True):
        self.cfg, self.run_dir, self.progress = cfg, run_dir, progress
        self.device = pick_device(cfg["device"])
        seed_everything(cfg["seed"])
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        data = cfg["data"]
        dataset = load_dataset(data["name"], "train", data["resolution"], data["root"])
        if len(dataset.classes) < 2:
            raise UserError(f"dataset {data['name']} has {len(dataset.classes)} class: a search needs at least 2")
        indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg["seed"]))
        if data["limit"] is not None:
            indices = indices[: data["limit"]]
        train_part, val_part = split_indices(len(indices), cfg["train_portion"], cfg["seed"])
        train_idx, val_idx = indices[train_part], indices[val_part]
        if min(len(train_idx), len(val_idx)) < 1:
            raise UserError("the training set is too small to split into search-train and search-val halves")
        self.dataset = dataset.to(self.device)
        cl = cfg["channels_last"]
        augment = {"crop_padding": data["crop_padding"], "flip": data["flip"], "cutout": data["cutout"]}
        bs = cfg["batch_size"]
        self.train_batches = BatchIterator(self.dataset, train_idx, bs, seed=cfg["seed"], train=True,
                                           augment_kwargs=augment, channels_last=cl)
        # The val half feeds the architecture steps (shuffled and augmented as in DARTS) and,
        # unaugmented in a fixed order, the end-of-epoch validation.
        self.arch_batches = BatchIterator(self.dataset, val_idx, bs, seed=cfg["seed"] + 1, train=True,
                                          augment_kwargs=augment, channels_last=cl)
        self.val_batches = BatchIterator(self.dataset, val_idx, bs, seed=cfg["seed"], train=False, channels_last=cl)

        self.model = build_supernet(cfg, len(dataset.classes), in_channels=dataset.images.shape[1]).to(self.device)
        if cl:
            self.model = self.model.to(memory_format=torch.channels_last)
        w, a = cfg["weights"], cfg["arch"]
        self.w_opt = torch.optim.SGD(self.model.weight_parameters(), w["lr"], momentum=w["momentum"],
                                     weight_decay=w["weight_decay"])
        self.a_opt = torch.optim.Adam(self.model.arch_parameters(), a["lr"], betas=tuple(a["betas"]),
                                      weight_decay=a["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, cfg["epochs"], eta_min=w["lr_min"])
        self.estimator = build_estimator(cfg)
        self.start_epoch = 0

    # --- checkpoints ---
    def state_dict(self, next_epoch: int) -> dict:
        return {"epoch": next_epoch, "model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
                "estimator": getattr(self.estimator, "state_dict", dict)()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.scheduler.load_state_dict(state["scheduler"])
        if hasattr(self.estimator, "load_state_dict"):
            self.estimator.load_state_dict(state.get("estimator", {}))
        set_rng_state(state["rng"])
        self.start_epoch = state["epoch"]

    # --- one epoch ---
    def train_epoch(self, epoch: int) -> dict:
        cfg, model = self.cfg, self.model
        model.train()
        model.set_epoch(epoch, cfg["epochs"])
        lr = self.scheduler.get_last_lr()[0]
        ctx = StepContext(loss_fn=cross_entropy, weight_optimizer=self.w_opt, weight_lr=lr)
        update_arch = epoch >= cfg["warmup_epochs"]
        weights = self.model.weight_parameters()
        amp = autocast(cfg, self.device)
        # Running sums stay on the device: no per-step host sync.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        arch_iter = _cycle(self.arch_batches, epoch)
        bar = _progress(len(self.train_batches), f"epoch {epoch + 1}/{cfg['epochs']}", self.progress)
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
        return {"train_loss": loss_sum.item() / max(seen, 1), "train_acc": 100.0 * correct.item() / max(seen, 1),
                "lr": lr}

    def search_step(self, train_batch, val_batch, ctx: StepContext, weights, amp):
        """One bilevel step: an architecture step on ``val_batch`` (None: alpha stays frozen),
        then a weight step on ``train_batch``. Returns the weight step's loss and logits."""
        model = self.model
        if val_batch is not None:
            model.set_phase("arch")
            self.a_opt.zero_grad(set_to_none=True)
            with amp:
                self.estimator.step(model, train_batch, val_batch, ctx)
            self.a_opt.step()
        x, y = train_batch
        model.set_phase("weights")
        self.w_opt.zero_grad(set_to_none=True)
        with amp:
            loss, logits = model.training_loss(x, y)
        # Gradients for the weights only; alpha keeps the architecture step's gradient out.
        torch.autograd.backward(loss, inputs=weights)
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
        return {"val_loss": loss_sum.item() / seen, "val_acc": 100.0 * correct.item() / seen}

    def epoch_record(self, epoch: int, train: dict, val: dict, seconds: float) -> dict:
        genotype = self.model.genotype()
        alpha = {k: [[round(float(v), 6) for v in row] for row in w.tolist()]
                 for k, w in self.model.arch_weights().items()}
        return {"epoch": epoch + 1, **train, **val, "epoch_time": round(seconds, 3), "alpha": alpha,
                "genotype": str(genotype), **self.model.genotype_metrics(genotype)}

    def run(self, stop_after: int | None = None, callbacks=()) -> SearchResult:
        """Train until ``stop_after`` (or all) epochs are done. Each callback's optional
        ``on_epoch(record, run_dir)`` is called after every epoch and ``on_end(result)`` at the
        end (also when stopping early): logging and plotting hook in there, not in the loop."""
        cfg, metrics_path = self.cfg, self.run_dir / "metrics.jsonl"
        last = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after)
        for epoch in range(self.start_epoch, last):
            t0 = time.perf_counter()
            train = self.train_epoch(epoch)
            val = self.validate()
            record = self.epoch_record(epoch, train, val, time.perf_counter() - t0)
            append_jsonl(metrics_path, record)
            atomic_torch_save(self.state_dict(epoch + 1), self.run_dir / CHECKPOINT)
            if self.progress:
                print(_summary_line(record), flush=True)
            for cb in callbacks:
                if hasattr(cb, "on_epoch"):
                    cb.on_epoch(record, self.run_dir)
        metrics = read_jsonl(metrics_path)
        genotype = self.model.genotype()
        if last == cfg["epochs"]:
            payload = {"space": cfg["space"]["name"], "genotype": _genotype_payload(genotype), "text": str(genotype),
                       **self.model.genotype_metrics(genotype)}
            atomic_write_text(self.run_dir / "genotype.json", json.dumps(payload, indent=1) + "\n")
        result = SearchResult(genotype=genotype, alpha_history=[m["alpha"] for m in metrics],
                              run_dir=self.run_dir, metrics=metrics)
        for cb in callbacks:
            if hasattr(cb, "on_end"):
                cb.on_end(result)
        return result


def _genotype_payload(genotype):
    return genotype.to_dict() if hasattr(genotype, "to_dict") else str(genotype)


def _summary_line(r: dict) -> str:
    extra = "".join(f" {k}={r[k]}" for k in ("skip_normal", "skip_reduce", "skip_count") if k in r)
    # Spaces with a ground-truth table (NAS-Bench-201) log the derived cell's test accuracies.
    bench = [f"{name} {r[k]:.2f}" for k, name in (("cifar10_test", "C10"), ("cifar100_test", "C100"),
                                                  ("imagenet16_test", "IN16")) if k in r]
    if bench:
        extra += " | NB201 test " + " ".join(bench)
    return (f"epoch {r['epoch']}: train loss {r['train_loss']:.3f} acc {r['train_acc']:.1f} | "
            f"val loss {r['val_loss']:.3f} acc {r['val_acc']:.1f} | {r['epoch_time']:.1f}s{extra}\n  {r['genotype']}")


def _cycle(batches: BatchIterator, epoch: int):
    """Architecture batches for one epoch; if the val half is the smaller one, start it over
    (with a fresh order) rather than stop the epoch early."""
    round_ = 0
    while True:
        yield from batches.epoch(epoch + 100_000 * round_)
        round_ += 1


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


# --- the public entry point -------------------------------------------------------------------

def search(config: dict | str | Path | None = None, *, out: str | Path | None = None,
           resume: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
           label: str | None = None, callbacks=()) -> SearchResult:
    """Run a search and return its result.

    ``config``: a preset name, a YAML file, a (partial) config dict, or None for the
    ``nb201-quick`` preset; partial dicts are resolved over the defaults. ``out``: the run directory (default
    ``runs/<timestamp>-<preset>``). ``resume``: continue the run in that directory from its last
    checkpoint (its own config is used). ``stop_after``: stop once that many epochs are done,
    leaving a resumable run (used to interrupt on purpose). ``label`` names the default run
    directory (the preset's name when ``config`` is one). ``callbacks``: objects with optional
    ``on_epoch(record, run_dir)`` / ``on_end(result)`` methods.
    """
    if resume is not None:
        if config is not None or out is not None:
            raise UserError("--resume continues a run with its own config: drop --preset/--config/--set/--out")
        run_dir, cfg, state = load_run(resume)
        callbacks = (*default_callbacks(cfg), *callbacks)
        searcher = Searcher(cfg, run_dir, progress)
        searcher.load_state_dict(state)
        _truncate_metrics(run_dir / "metrics.jsonl", searcher.start_epoch)
        return searcher.run(stop_after, callbacks)

    cfg = resolve_search_config(config)
    callbacks = (*default_callbacks(cfg), *callbacks)
    if label is None:
        label = str(config) if isinstance(config, str) and config in config_lib.preset_names() else "search"
    run_dir, created = new_run_dir(out, DEFAULT_PRESET if config is None else label)
    try:
        atomic_write_text(run_dir / "config.yaml", config_lib.dump(cfg))
        searcher = Searcher(cfg, run_dir, progress)
    except BaseException:
        _remove_failed_run(run_dir, created)
        raise
    return searcher.run(stop_after, callbacks)


def resolve_search_config(config) -> dict:
    if config is None:
        return config_lib.resolve(DEFAULT_PRESET)
    if isinstance(config, dict):
        return config_lib.resolve(config_file=config)
    if isinstance(config, (str, Path)) and str(config) in config_lib.preset_names():
        return config_lib.resolve(str(config))
    return config_lib.resolve(config_file=config)


def load_run(run_dir: str | Path) -> tuple[Path, dict, dict]:
    run_dir = Path(run_dir)
    ckpt, cfg_path = run_dir / CHECKPOINT, run_dir / "config.yaml"
    if not ckpt.is_file() or not cfg_path.is_file():
        raise UserError(f"--resume {run_dir}: no checkpoint.pt and config.yaml there; give the directory of a search run")
    try:
        cfg = config_lib.resolve(config_file=yaml.safe_load(cfg_path.read_text()))
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or not {"epoch", "model", "w_opt", "a_opt", "rng"} <= set(state):
            raise ValueError("missing entries")
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--resume {run_dir}: checkpoint.pt is not a valid search checkpoint ({type(e).__name__}); start a new run") from e
    return run_dir, cfg, state


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric lines past the checkpoint (an epoch logged but not checkpointed before a crash)."""
    records = [r for r in read_jsonl(path) if r.get("epoch", 0) <= epochs_done]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def _remove_failed_run(run_dir: Path, created: bool) -> None:
    """A run that failed before its first epoch (bad data, say) leaves no directory behind;
    only what this run wrote is removed."""
    (run_dir / "config.yaml").unlink(missing_ok=True)
    if created and not any(run_dir.iterdir()):
        run_dir.rmdir()

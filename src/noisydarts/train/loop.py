"""The training loop: :class:`Trainer` trains a found architecture's evaluation network from
scratch (built by its space, :meth:`noisydarts.spaces.Space.build_network`) on the training split
and tests it on the test split after every epoch; :func:`evaluate_model` is its test.

Run directory (as search; created, locked and resumed by :mod:`noisydarts.runtime.lifecycle`):
``config.yaml``, ``genotype.json`` (the architecture, any space), ``metrics.jsonl`` (one line per
epoch: train loss/acc, test loss/acc/top-5, holdout accuracy when there is a holdout, lr, epoch
time), ``checkpoint.pt`` (atomic; model, optimizer, scheduler, RNG states, epoch), ``weights.pt``
(final) and ``best.pt`` (with a selection). Weight files hold the genotype's payload, the network
config and the state dict, so that evaluate/export can rebuild the network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import make_batches, open_dataset
from ..data.record import DATA_RECORD, data_line, data_record
from ..errors import UserError
from ..runtime import distributed, guard
from ..runtime.callbacks import for_rank
from ..runtime.device import autocast
from ..runtime.progress import progress_bar
from ..runtime.rng import checkpoint_rng, restore_rng, seed_everything
from ..runtime.runs import append_jsonl, atomic_torch_save, atomic_write_text, read_jsonl
from ..spaces import genotype_payload, space_of
from .preprocessing import data_config

CHECKPOINT, BEST, FINAL = "checkpoint.pt", "best.pt", "weights.pt"
#: What a training checkpoint must hold (checked on ``--resume``).
CHECKPOINT_KEYS = {"epoch": int, "model": dict, "optimizer": dict, "scheduler": dict, "rng": dict,
                   "best_acc": (float, type(None))}


@dataclass
class TrainResult:
    test_acc: float
    best_acc: float | None
    run_dir: Path
    metrics: list[dict] = field(default_factory=list)
    model: nn.Module | None = None
    selected_on: str | None = None   # holdout | test: what best_acc (and best.pt) was selected on


def build_model(genotype, cfg: dict, num_classes: int, in_channels: int = 3) -> nn.Module:
    """The evaluation network of ``genotype`` as a resolved training config describes it."""
    return space_of(genotype).build_network(genotype, cfg["family"], num_classes, cfg["network"], in_channels)


def split_output(out):
    """(logits, aux_logits or None) whatever the network returns (DARTS nets: a tuple in training)."""
    return out if isinstance(out, tuple) else (out, None)


class Trainer:
    def __init__(self, genotype, cfg: dict, run_dir: Path, progress: bool = True):
        self.genotype, self.cfg, self.run_dir = genotype, cfg, run_dir
        self.device = distributed.setup(cfg)  # this rank's device; under torchrun, the process group
        self.rank, self.world = distributed.shard()
        self.progress = progress and self.rank == 0
        seed_everything(cfg["seed"])
        d = cfg["data"]
        train_set = open_dataset(d, "train", self.device)  # in memory on the device, or streamed from disk
        test_set = open_dataset(d, "test", self.device)
        self.num_classes = len(train_set.classes)
        # What a user of the trained network needs besides its weights (weights files, exports).
        self.classes, self.preprocessing = list(train_set.classes), data_config(d, train_set)
        self.data_record = data_record(d, train_set)
        # A seeded sample (data.limit) of the training images, the first data.holdout of them held out.
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg["seed"]))[: d["limit"]]
        if d["holdout"] >= len(order):
            raise UserError(f"data.holdout={d['holdout']} leaves no training images out of {len(order)}: use fewer")
        holdout_idx, train_idx = order[: d["holdout"]].sort().values, order[d["holdout"]:].sort().values
        self.images_used = len(order)
        test_idx = torch.arange(len(test_set))
        if d["limit"] is not None:  # a seeded sample of the test set too (it may be sorted by class)
            test_idx = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(cfg["seed"]))[: d["limit"]]
        cl, shard = cfg["channels_last"], (self.rank, self.world)  # under torchrun: this rank's slices
        self.train_batches = make_batches(train_set, train_idx, cfg["batch_size"], seed=cfg["seed"], train=True, data=d,
                                          channels_last=cl, device=self.device, shard=shard)
        self.holdout_batches = (make_batches(train_set, holdout_idx, cfg["batch_size"], seed=cfg["seed"], train=False,
                                             data=d, channels_last=cl, device=self.device, shard=shard)
                                if len(holdout_idx) else None)
        self.test_batches = make_batches(test_set, test_idx, cfg["batch_size"], seed=cfg["seed"], train=False, data=d,
                                         channels_last=cl, device=self.device, shard=shard)
        self.model = build_model(genotype, cfg, self.num_classes, train_set.channels).to(self.device)
        if cfg["drop_path_prob"] > 0 and not hasattr(self.model, "drop_path_prob"):
            raise UserError(f"{space_of(genotype).name} networks have no drop-path: set drop_path_prob=0")
        if cl:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.world > 1:  # SyncBatchNorm if asked; rank 0's weights; a generator of its own per rank
            if cfg["distributed"]["sync_bn"]:
                self.model = distributed.convert_sync_batchnorm(self.model)
            distributed.broadcast_module(self.model)
            seed_everything(distributed.rank_seed(cfg["seed"], self.rank))
        sgd = cfg["weights"]
        self.optimizer = torch.optim.SGD(self.model.parameters(), sgd["lr"], momentum=sgd["momentum"],
                                         weight_decay=sgd["weight_decay"], nesterov=sgd["nesterov"])
        if sgd["lr_schedule"] == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg["epochs"], eta_min=0.0)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1.0 - e / cfg["epochs"])
        self.start_epoch, self.best_acc = 0, None

    def data_line(self) -> str:
        """What data this run found and uses (printed after the start line)."""
        return data_line(self.cfg["data"], ("train", "test"), self.images_used)

    def state_dict(self, next_epoch: int) -> dict:
        return {"epoch": next_epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), **checkpoint_rng(), "world_size": self.world,
                "best_acc": self.best_acc}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state, self.cfg["seed"])
        self.start_epoch, self.best_acc = state["epoch"], state["best_acc"]

    def weights_payload(self, selected_on: str | None = None) -> dict:
        return {**genotype_payload(self.genotype), "family": self.cfg["family"], "network": self.cfg["network"],
                "num_classes": self.num_classes, "data": self.cfg["data"]["name"],
                "resolution": self.cfg["data"]["resolution"], "data_config": dict(self.cfg["data"]),
                "selected_on": selected_on, "classes": self.classes, "preprocessing": self.preprocessing,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    def train_epoch(self, epoch: int) -> dict:
        cfg, model = self.cfg, self.model
        model.train()
        # Drop-path grows linearly: 0 at the first epoch, drop_path_prob * (E-1)/E at the last (DARTS).
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = cfg["drop_path_prob"] * epoch / cfg["epochs"]
        lr = self.scheduler.get_last_lr()[0]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        amp = autocast(cfg, self.device)
        bar = progress_bar(len(self.train_batches), f"epoch {epoch + 1}/{cfg['epochs']}", self.progress)
        for x, y in self.train_batches.epoch(epoch):
            self.optimizer.zero_grad(set_to_none=True)
            with amp:
                logits, aux = split_output(model(x))
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg["label_smoothing"])
                if aux is not None:
                    loss_total = loss + cfg["auxiliary_weight"] * F.cross_entropy(
                        aux.float(), y, label_smoothing=cfg["label_smoothing"])
                else:
                    loss_total = loss
            loss_total.backward()
            if self.world > 1:  # the global batch's mean gradient, the same on every rank
                params = [p for p in model.parameters() if p.grad is not None]
                for p, g in zip(params, distributed.all_reduce_mean([p.grad for p in params], len(y))):
                    p.grad = g
            if cfg["weights"]["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), cfg["weights"]["grad_clip"])
            self.optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        self.scheduler.step()
        if self.world > 1:
            if not cfg["distributed"]["sync_bn"]:
                distributed.average_buffers(model)  # BN running statistics: the same on every rank
            loss_total, correct_total, seen = distributed.sum_over_ranks([loss_sum, correct, seen])
            return {"train_loss": loss_total / seen, "train_acc": 100.0 * correct_total / seen, "lr": lr}
        return {"train_loss": loss_sum.item() / seen, "train_acc": 100.0 * correct.item() / seen, "lr": lr}

    def test(self) -> dict:
        r = evaluate_model(self.model, self.test_batches, self.cfg, self.device)
        record = {"test_loss": r["loss"], "test_acc": r["top1"], "test_top5": r["top5"]}
        if self.holdout_batches is not None:
            record["holdout_acc"] = evaluate_model(self.model, self.holdout_batches, self.cfg, self.device)["top1"]
        return record

    def run(self, stop_after: int | None = None, callbacks=()) -> TrainResult:
        """Train until ``stop_after`` (or all) epochs are done. ``callbacks``
        (:class:`noisydarts.runtime.callbacks.Callback`, e.g. :mod:`noisydarts.train.callbacks`'
        plots and TensorBoard): ``on_epoch(record, run_dir)`` once an epoch is in metrics.jsonl and
        checkpoint.pt, ``on_end(result)`` at the end (also after ``stop_after``); rank 0 only."""
        cfg, metrics_path = self.cfg, self.run_dir / "metrics.jsonl"
        callbacks = for_rank(callbacks, self.rank)
        last = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after)
        selected_on = {"holdout": "holdout_acc", "test": "test_acc"}.get(cfg["selection"])
        main = self.rank == 0  # under torchrun, rank 0 alone writes the run directory and prints
        for epoch in range(self.start_epoch, last):
            t0 = time.perf_counter()
            record = {"epoch": epoch + 1, **self.train_epoch(epoch), **self.test()}
            record["epoch_time"] = round(time.perf_counter() - t0, 3)
            guard.check_epoch(epoch + 1, self.run_dir, "training", {k: record[k] for k in ("train_loss", "test_loss")},
                              {"weights": self.model.state_dict().values(),
                               "optimizer state": guard.optimizer_tensors(self.optimizer)}, hint="lower weights.lr",
                              agree=distributed.agree_nonfinite if self.world > 1 else None)
            improved = selected_on and (self.best_acc is None or record[selected_on] > self.best_acc)
            if improved:  # the same verdict on every rank (the metrics are reduced over ranks)
                self.best_acc = record[selected_on]
            state = self.state_dict(epoch + 1)  # on every rank: it gathers their RNG states
            if not main:
                continue
            if not (self.run_dir / DATA_RECORD).is_file():  # with the first checkpoint: the run's data, resolved
                atomic_write_text(self.run_dir / DATA_RECORD, json.dumps(self.data_record, indent=1) + "\n")
            append_jsonl(metrics_path, record)
            if improved:
                atomic_torch_save(self.weights_payload(cfg["selection"]), self.run_dir / BEST)
            atomic_torch_save(state, self.run_dir / CHECKPOINT)
            if self.progress:
                holdout = f" | holdout acc {record['holdout_acc']:.2f}" if "holdout_acc" in record else ""
                print(f"epoch {record['epoch']}: train loss {record['train_loss']:.3f} acc {record['train_acc']:.1f} | "
                      f"test loss {record['test_loss']:.3f} acc {record['test_acc']:.2f}{holdout} | "
                      f"{record['epoch_time']:.1f}s", flush=True)
            for cb in callbacks:
                cb.on_epoch(record, self.run_dir)
        if not main:
            return TrainResult(test_acc=float("nan"), best_acc=self.best_acc, run_dir=self.run_dir, model=self.model)
        metrics = read_jsonl(metrics_path)
        if last == cfg["epochs"]:
            atomic_torch_save(self.weights_payload(), self.run_dir / FINAL)
        test_acc = metrics[-1]["test_acc"] if metrics else float("nan")
        result = TrainResult(test_acc=test_acc, best_acc=self.best_acc, run_dir=self.run_dir, metrics=metrics,
                             model=self.model, selected_on=None if selected_on is None else cfg["selection"])
        for cb in callbacks:
            cb.on_end(result)
        return result


@torch.no_grad()
def evaluate_model(model: nn.Module, batches, cfg: dict, device) -> dict:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of ``model`` in eval mode (top-5: None
    with 5 classes or fewer, where it is 100 % by construction). Under torchrun
    with sharded ``batches``, each rank evaluates its slices and the sums are reduced."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    seen, classes = 0, None
    with autocast(cfg, device):
        for x, y in batches.epoch(0):
            logits, _ = split_output(model(x))
            logits = logits.float()
            classes = logits.shape[1]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            k = min(5, logits.shape[1])
            hits = logits.topk(k, dim=1).indices == y[:, None]
            top1 += hits[:, 0].sum()
            top5 += hits.any(dim=1).sum()
            seen += len(y)
    # Top-5 of 5 classes or fewer is 100 % whatever the network does: not reported (None).
    informative = classes is None or classes > 5
    if getattr(batches, "world", 1) > 1:
        loss_total, top1_total, top5_total, seen = distributed.sum_over_ranks([loss_sum, top1, top5, seen])
        return {"loss": loss_total / seen, "top1": 100.0 * top1_total / seen,
                "top5": 100.0 * top5_total / seen if informative else None, "images": int(seen)}
    return {"loss": loss_sum.item() / seen, "top1": 100.0 * top1.item() / seen,
            "top5": 100.0 * top5.item() / seen if informative else None, "images": seen}

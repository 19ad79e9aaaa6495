"""Train a found architecture from scratch: the evaluation protocol of its space.

``train(arch, config, out=, resume=)`` builds the evaluation network of ``arch`` through its
space (:meth:`noisydarts.spaces.Space.build_network`), trains it on the training split and tests
it on the test split after every epoch.

The configuration is layered like the search's::

    DEFAULTS  <-  the space's recipe for the family  <-  the search run's ``train`` section
              <-  config (dict / YAML)  <-  --set KEY=VALUE

(the ``train`` section: the evaluation settings a search preset carries for its architectures,
e.g. PC-DARTS' drop-path 0.3; used when ``arch`` is that search's run directory).

:data:`DEFAULTS` is the DARTS CIFAR protocol (600 epochs, batch 96, SGD lr 0.025 cosine to 0,
momentum 0.9, wd 3e-4, grad clip 5, auxiliary loss weight 0.4, drop-path 0.2 increased linearly
from 0 over the epochs, cutout 16); each space's recipe changes what its papers do differently
(NAS-Bench-201: 200 epochs, batch 256, Nesterov SGD lr 0.1, wd 5e-4, no auxiliary head,
drop-path or cutout; the DARTS space's ``imagenet`` family: the mobile setting). ``family``
picks the dataset family (``cifar``, ``imagenet``, ...), ``network`` holds the space's network
keys (DARTS: channels, layers, auxiliary; NB201: channels, cells_per_stage).

Model selection: by default the final weights are the result (``weights.pt``), as the papers
report them. ``selection: holdout`` holds ``data.holdout`` training images out of training and
keeps the epoch with the best accuracy on them as ``best.pt``; ``selection: test`` selects on the
test split (optimistic, since the test split then chooses the model: only for comparing with
papers that report the best test epoch).

Run directory (as search): ``config.yaml``, ``genotype.json`` (the architecture, any space),
``metrics.jsonl`` (one line per epoch: train loss/acc, test loss/acc/top-5, holdout accuracy
when there is a holdout, lr, epoch time), ``checkpoint.pt`` (atomic; model, optimizer,
scheduler, RNG states, epoch), ``weights.pt`` (final) and ``best.pt`` (with a selection).
Weight files hold the genotype's payload, the network config and the state dict, so that
evaluate/export can rebuild the network.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from ..runtime import distributed, guard, runs
from ..config import DISTRIBUTED_DEFAULTS, _merge, dump, parse_overrides, validate_distributed
from ..data import make_batches, open_dataset
from ..errors import UserError
from ..models import GENOTYPE_FILE, resolve_genotype
from ..runtime.runs import append_jsonl, atomic_torch_save, atomic_write_text, new_run_dir, read_jsonl
from ..runtime.progress import progress_bar
from ..runtime.device import autocast, pick_device, precision
from ..runtime.rng import checkpoint_rng, restore_rng, seed_everything
from ..spaces import genotype_from_payload, genotype_payload, space_of

CHECKPOINT, BEST, FINAL = "checkpoint.pt", "best.pt", "weights.pt"
SELECTIONS = ("none", "holdout", "test")

DEFAULTS: dict = {
    "seed": 0,
    "device": "auto",
    "family": "cifar",           # the dataset family: picks the space's network and recipe
    "epochs": 600,
    "batch_size": 96,
    "lr": 0.025,
    "lr_schedule": "cosine",     # cosine (to 0) | linear (to 0)
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 3e-4,
    "grad_clip": 5.0,            # null = no clipping
    "label_smoothing": 0.0,
    "auxiliary_weight": 0.4,     # loss weight of the auxiliary head, when the network has one
    "drop_path_prob": 0.2,       # reached at the last epoch, linearly from 0
    "selection": "none",         # none | holdout | test: which epoch best.pt keeps (see above)
    "channels_last": True,
    "amp": "auto",
    "network": {},               # the space's network keys (from Space.network_defaults)
    "data": {"name": "cifar10", "root": None, "resolution": 32, "limit": None, "holdout": 0,
             "crop_padding": 4, "flip": True, "cutout": 16,
             # the data path and its augmentation (noisydarts.data.factory; as in the search config)
             "in_memory": "auto", "memory_budget_gb": None, "workers": None, "augment": "auto", "color_jitter": 0.4},
    # data-parallel training under torchrun (noisydarts.distributed; no noise to share here)
    "distributed": {k: v for k, v in DISTRIBUTED_DEFAULTS.items() if k != "noise_std"},
}


@dataclass
class TrainResult:
    test_acc: float
    best_acc: float | None
    run_dir: Path
    metrics: list[dict] = field(default_factory=list)
    model: nn.Module | None = None
    selected_on: str | None = None   # holdout | test: what best_acc (and best.pt) was selected on


def search_recipe(arch) -> dict:
    """The evaluation settings a search carries for its architectures: the non-null entries of
    the ``train`` section of the search run's config.yaml when ``arch`` is a search run directory
    (or its genotype.json), e.g. PC-DARTS' drop-path 0.3; else nothing."""
    if not isinstance(arch, (str, Path)):
        return {}
    path = Path(arch)
    run = path if path.is_dir() else path.parent if path.name == GENOTYPE_FILE else None
    if run is None or not (run / "config.yaml").is_file():
        return {}
    try:
        section = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("train")
    except (yaml.YAMLError, AttributeError, OSError):
        return {}
    return {k: v for k, v in section.items() if v is not None} if isinstance(section, dict) else {}


def resolve_config(config: dict | str | Path | None = None, overrides: list[str] | None = None, *,
                   arch=None, search: dict | None = None) -> dict:
    """DEFAULTS <- the recipe of ``arch``'s space for the chosen family <- ``search`` (the search
    run's evaluation settings, :func:`search_recipe`) <- config (dict / YAML) <- ``--set`` pairs.
    Without ``arch`` the DARTS space's recipe is used."""
    from ..spaces import get_space

    layers = [("the search run's train section", search)] if search else []
    if isinstance(config, (str, Path)):
        from ..config import load_yaml

        config = load_yaml(config)
    if config:
        layers.append(("config", config))
    if overrides:
        layers.append(("--set", parse_overrides(overrides)))
    family = DEFAULTS["family"]
    for _, layer in layers:
        if isinstance(layer, dict):
            family = layer.get("family", family)
    space = space_of(arch) if arch is not None else get_space("darts")
    if family is None or family == "":
        raise UserError(f"family needs a value: one of {', '.join(space.families)}")
    if not isinstance(family, str):
        raise UserError(f"family must be str (one of {', '.join(space.families)}), got {family!r}")
    space.check_family(family)
    cfg = copy.deepcopy(DEFAULTS)
    cfg["network"] = space.network_defaults(family)
    _merge(cfg, space.recipe(family), f"the {space.name} space's {family} recipe", "")
    for origin, layer in layers:
        _merge(cfg, layer, origin, "")
    validate(cfg)
    space.validate_network(cfg["network"], family)
    return cfg


def validate(cfg: dict) -> None:
    checks = [
        (0 <= cfg["seed"] < 2**62, f"seed must be an integer in [0, 2^62), got {cfg['seed']}"),
        (cfg["epochs"] >= 1, "epochs must be at least 1"),
        (cfg["batch_size"] >= 1, "batch_size must be at least 1"),
        (0.0 <= cfg["drop_path_prob"] < 1.0, "drop_path_prob must be in [0, 1)"),
        (cfg["auxiliary_weight"] >= 0, "auxiliary_weight must be >= 0"),
        (cfg["lr"] > 0, "lr must be > 0"),
        (cfg["lr_schedule"] in ("cosine", "linear"), "lr_schedule must be cosine or linear"),
        (cfg["grad_clip"] is None or cfg["grad_clip"] > 0, "grad_clip must be > 0 or null"),
        (cfg["amp"] in ("auto", "on", "off"), "amp must be auto, on or off"),
        (cfg["selection"] in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}"),
        (cfg["data"]["limit"] is None or cfg["data"]["limit"] >= 1, "data.limit must be null or >= 1"),
        (cfg["data"]["holdout"] >= 0, "data.holdout (training images held out for selection) must be >= 0"),
        (cfg["selection"] != "holdout" or cfg["data"]["holdout"] >= 1,
         "selection: holdout needs data.holdout >= 1 training images to select on, e.g. --set data.holdout=5000"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    validate_distributed({"noise_std": "local", **cfg["distributed"]})
    from ..data import validate_data_config

    validate_data_config(cfg["data"])


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
        # A seeded sample (data.limit) of the training images, the first data.holdout of them held out.
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg["seed"]))[: d["limit"]]
        if d["holdout"] >= len(order):
            raise UserError(f"data.holdout={d['holdout']} leaves no training images out of {len(order)}: use fewer")
        holdout_idx, train_idx = order[: d["holdout"]].sort().values, order[d["holdout"]:].sort().values
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
        self.optimizer = torch.optim.SGD(self.model.parameters(), cfg["lr"], momentum=cfg["momentum"],
                                         weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"])
        if cfg["lr_schedule"] == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg["epochs"], eta_min=0.0)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1.0 - e / cfg["epochs"])
        self.start_epoch, self.best_acc = 0, None

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
                "selected_on": selected_on,
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
            if cfg["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
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

    def run(self, stop_after: int | None = None) -> TrainResult:
        cfg, metrics_path = self.cfg, self.run_dir / "metrics.jsonl"
        last = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after)
        selected_on = {"holdout": "holdout_acc", "test": "test_acc"}.get(cfg["selection"])
        main = self.rank == 0  # under torchrun, rank 0 alone writes the run directory and prints
        for epoch in range(self.start_epoch, last):
            t0 = time.perf_counter()
            record = {"epoch": epoch + 1, **self.train_epoch(epoch), **self.test()}
            record["epoch_time"] = round(time.perf_counter() - t0, 3)
            guard.check_epoch(epoch + 1, self.run_dir, "training", {k: record[k] for k in ("train_loss", "test_loss")},
                              {"weights": self.model.state_dict().values(),
                               "optimizer state": guard.optimizer_tensors(self.optimizer)}, hint="lower lr",
                              agree=distributed.agree_nonfinite if self.world > 1 else None)
            improved = selected_on and (self.best_acc is None or record[selected_on] > self.best_acc)
            if improved:  # the same verdict on every rank (the metrics are reduced over ranks)
                self.best_acc = record[selected_on]
            state = self.state_dict(epoch + 1)  # on every rank: it gathers their RNG states
            if not main:
                continue
            append_jsonl(metrics_path, record)
            if improved:
                atomic_torch_save(self.weights_payload(cfg["selection"]), self.run_dir / BEST)
            atomic_torch_save(state, self.run_dir / CHECKPOINT)
            if self.progress:
                holdout = f" | holdout acc {record['holdout_acc']:.2f}" if "holdout_acc" in record else ""
                print(f"epoch {record['epoch']}: train loss {record['train_loss']:.3f} acc {record['train_acc']:.1f} | "
                      f"test loss {record['test_loss']:.3f} acc {record['test_acc']:.2f}{holdout} | "
                      f"{record['epoch_time']:.1f}s", flush=True)
        if not main:
            return TrainResult(test_acc=float("nan"), best_acc=self.best_acc, run_dir=self.run_dir, model=self.model)
        metrics = read_jsonl(metrics_path)
        if last == cfg["epochs"]:
            atomic_torch_save(self.weights_payload(), self.run_dir / FINAL)
        test_acc = metrics[-1]["test_acc"] if metrics else float("nan")
        return TrainResult(test_acc=test_acc, best_acc=self.best_acc, run_dir=self.run_dir, metrics=metrics,
                           model=self.model, selected_on=None if selected_on is None else cfg["selection"])


@torch.no_grad()
def evaluate_model(model: nn.Module, batches, cfg: dict, device) -> dict:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of ``model`` in eval mode. Under torchrun
    with sharded ``batches``, each rank evaluates its slices and the sums are reduced."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    with autocast(cfg, device):
        for x, y in batches.epoch(0):
            logits, _ = split_output(model(x))
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            k = min(5, logits.shape[1])
            hits = logits.topk(k, dim=1).indices == y[:, None]
            top1 += hits[:, 0].sum()
            top5 += hits.any(dim=1).sum()
            seen += len(y)
    if getattr(batches, "world", 1) > 1:
        loss_total, top1_total, top5_total, seen = distributed.sum_over_ranks([loss_sum, top1, top5, seen])
        return {"loss": loss_total / seen, "top1": 100.0 * top1_total / seen, "top5": 100.0 * top5_total / seen,
                "images": int(seen)}
    return {"loss": loss_sum.item() / seen, "top1": 100.0 * top1.item() / seen, "top5": 100.0 * top5.item() / seen,
            "images": seen}


def train(arch, config: dict | str | Path | None = None, *, overrides: list[str] | None = None,
          out: str | Path | None = None, resume: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train ``arch`` (anything :func:`noisydarts.models.resolve_genotype` accepts: a zoo name, a
    run directory, a genotype.json, genotype text of any space) from scratch.

    ``config``: a partial config (dict or YAML file) over the recipe of the architecture's space;
    ``overrides``: ``KEY=VALUE`` strings over that. ``resume``: continue the run in that directory
    (its own config and architecture). ``stop_after``: stop once that many epochs are done,
    leaving a resumable run.

    Under torchrun every process calls this with the same arguments; rank 0 creates, locks and
    writes the run directory and prints (as :func:`noisydarts.search.search`)."""
    import contextlib

    if resume is not None:
        if arch is not None or config is not None or overrides or out is not None:
            raise UserError("--resume continues a run with its own architecture and config: drop GENOTYPE/--set/--out")
        run_dir = runs.resume_dir(resume, "train")
        # The recipe is the architecture's space's; load_run first says what is missing, if anything.
        complete = all(runs.path_kind(run_dir / n) == "file" for n in (CHECKPOINT, "config.yaml"))
        genotype = resolve_genotype(run_dir) if complete else None

        def resolve(raw):
            return resolve_config(raw, arch=genotype)

        if complete:
            distributed.setup(runs.read_run_config(run_dir, "train", resolve)[0])
        with contextlib.ExitStack() as stack:
            def lock() -> None:  # rank 0 holds the run; the others hear whether it could
                stack.enter_context(runs.active_run(run_dir, "train"))

            distributed.on_main(lock)
            run_dir, cfg, state, _ = runs.load_run(run_dir, "train", resolve,
                                                   keys={"epoch": int, "model": dict, "optimizer": dict,
                                                         "scheduler": dict, "rng": dict,
                                                         "best_acc": (float, type(None))})
            trainer = Trainer(genotype, cfg, run_dir, progress)
            with runs.restoring(run_dir, f"config.yaml and {GENOTYPE_FILE}"):
                trainer.load_state_dict(state)
            if distributed.is_main():
                records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("epoch", 0) <= trainer.start_epoch]
                atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
            if trainer.progress:
                print(runs.start_line("train", trainer.device, precision(cfg, trainer.device), run_dir,
                                      resumed_at=trainer.start_epoch, world=trainer.world), flush=True)
            return trainer.run(stop_after)

    genotype = resolve_genotype(arch)
    cfg = resolve_config(config, overrides, arch=genotype, search=search_recipe(arch))
    distributed.setup(cfg)  # under torchrun: checks the launch (one line on every rank), joins the others
    started, trainer = None, None
    try:
        with contextlib.ExitStack() as stack:
            def start_run() -> tuple[str, bool]:  # rank 0: the run directory, locked, with its config and genotype
                run_dir, created = new_run_dir(out, "train")
                stack.enter_context(runs.active_run(run_dir, "train"))
                try:
                    atomic_write_text(run_dir / "config.yaml", dump(cfg, runs.provenance()))
                    atomic_write_text(run_dir / GENOTYPE_FILE, json.dumps(genotype_payload(genotype), indent=1) + "\n")
                except BaseException:
                    runs.remove_failed_run(run_dir, False, ("config.yaml", GENOTYPE_FILE))
                    raise
                return str(run_dir), created

            started = distributed.on_main(start_run)
            run_dir = Path(started[0])
            trainer = Trainer(genotype, cfg, run_dir, progress)
            if trainer.progress:
                print(runs.start_line("train", trainer.device, precision(cfg, trainer.device), run_dir,
                                      world=trainer.world), flush=True)
            return trainer.run(stop_after)
    except BaseException:
        # Failed before its first epoch began: leave nothing behind (once the lock is released).
        if started is not None and trainer is None and distributed.is_main():
            runs.remove_failed_run(Path(started[0]), started[1], ("config.yaml", GENOTYPE_FILE))
        raise


# --- trained networks: load, evaluate, export ---------------------------------------------------

def load_trained(source: str | Path, num_classes: int | None = None) -> tuple[nn.Module, dict]:
    """The network in a weights file (``best.pt``/``weights.pt``) or a run directory (its
    ``weights.pt``, else ``best.pt``), in eval mode, and the file's payload."""
    path = Path(source)
    if runs.path_kind(path) == "dir":
        path = next((path / n for n in (FINAL, BEST) if (path / n).is_file()), None)
        if path is None:
            raise UserError(f"{source} has no weights.pt or best.pt: give a training run directory or a weights file")
    if runs.path_kind(path) != "file":
        raise UserError(f"weights {source} not found: give a training run directory or a weights file")
    payload = runs.load_torch_file(path, "noisydarts weights file",
                                   {"space": str, "genotype": (dict, list, str), "family": str, "network": dict,
                                    "num_classes": int, "model": dict},
                                   "give best.pt or weights.pt of a training run")
    if num_classes is not None and num_classes != payload["num_classes"]:
        raise UserError(f"the weights in {path} classify {payload['num_classes']} classes but the data has {num_classes}: "
                        "evaluate on the dataset the network was trained on")
    genotype = genotype_from_payload(payload, str(path))
    try:
        model = space_of(genotype).build_network(genotype, payload["family"], payload["num_classes"],
                                                 payload["network"], _in_channels(payload))
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise UserError(f"the weights in {path} do not fit the architecture they name ({str(e).splitlines()[0]})") from e
    return model.eval(), payload


def evaluate(source: str | Path, data: str | None = None, *, root=None, batch_size: int = 256,
             device: str = "auto") -> dict:
    """Top-1 / top-5 (%) of a trained network on the test split of ``data`` (default: the data
    it was trained on)."""
    path = Path(source)
    payload_probe = None if data else load_trained(source)[1]
    name = data or payload_probe["data"]
    payload = payload_probe or load_trained(source)[1]
    # On its own data, the test view the network was trained with (e.g. resize + centre crop for
    # imagenet augmentation); on other data, what data.in_memory/augment: auto pick for it.
    same = name == payload["data"]
    d = {**DEFAULTS["data"], **(payload.get("data_config", {}) if same else {}), "name": name,
         "resolution": payload.get("resolution", 32)}
    if root is not None:
        d["root"] = root
    dev = pick_device(device)
    test_set = open_dataset(d, "test", dev)
    model, _ = load_trained(path, len(test_set.classes))
    model = model.to(dev)
    batches = make_batches(test_set, torch.arange(len(test_set)), batch_size, seed=0, train=False, data=d, device=dev)
    return evaluate_model(model, batches, {"amp": "off"}, dev)


def export(source: str | Path, fmt: str = "torchscript", out: str | Path | None = None) -> Path:
    """Write the trained network (eval mode, logits only) as one TorchScript or ONNX file
    (:mod:`noisydarts.exporting`); returns the file. ``out``: a file, or a directory to put
    ``model.ts`` / ``model.onnx`` in (missing directories are created); default: beside the weights."""
    from ..models.export import FORMATS, check_format, export_bytes

    check_format(fmt)
    model, payload = load_trained(source)
    r = payload.get("resolution", 32)
    example = torch.randn(2, _in_channels(payload), r, r)
    base = Path(source) if runs.path_kind(source) == "dir" else Path(source).parent
    name = "model" + FORMATS[fmt]
    out = base / name if out is None else Path(out) / name if runs.path_kind(out) == "dir" else Path(out)
    if out.exists():
        raise UserError(f"{out} already exists: choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out.parent} ({runs.os_reason(e)}): choose another --out") from e
    runs.atomic_write_bytes(out, export_bytes(fmt, model, example))
    return out


def _in_channels(payload: dict) -> int:
    """Image channels the network takes: the input width of its first convolution."""
    return next((int(v.shape[1]) for v in payload["model"].values() if getattr(v, "ndim", 0) == 4), 3)

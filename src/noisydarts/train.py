"""Train a found architecture from scratch: the DARTS evaluation protocol (NoisyDARTS Sec. 4.2).

``train(arch, config, out=, resume=)`` builds the evaluation network (spaces/darts.py
``NetworkCIFAR`` / ``NetworkImageNet``, or an NB201 network), trains it on the whole training
split and tests it on the test split after every epoch.

CIFAR defaults (DARTS): 600 epochs, batch 96, SGD lr 0.025 cosine to 0, momentum 0.9, wd 3e-4,
grad clip 5, auxiliary loss weight 0.4, drop-path 0.2 increased linearly from 0 over the epochs,
cutout 16, C=36, 20 cells. ImageNet defaults (``data.name`` given as ``imagenet`` family via
``network: imagenet``): 250 epochs, label smoothing 0.1, lr 0.5 decayed linearly, wd 3e-5,
C=48, 14 cells (see :data:`IMAGENET_DEFAULTS`).

Run directory (as search): ``config.yaml``, ``metrics.jsonl`` (one line per epoch: train
loss/acc, test loss/acc, lr, epoch time), ``checkpoint.pt`` (atomic; model, optimizer,
scheduler, RNG states, epoch), ``best.pt`` (best test accuracy) and ``weights.pt`` (final).
Weight files hold ``{"arch": str, "network": {...}, "num_classes": int, "model": state_dict}``
so that evaluate/export can rebuild the network.
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

from .config import _merge, parse_overrides
from .data import make_batches, open_dataset
from .errors import UserError
from .runs import append_jsonl, atomic_torch_save, atomic_write_text, new_run_dir, read_jsonl
from .search import _progress, autocast, pick_device, rng_state, seed_everything, set_rng_state

CHECKPOINT, BEST, FINAL = "checkpoint.pt", "best.pt", "weights.pt"

DEFAULTS: dict = {
    "seed": 0,
    "device": "auto",
    "network": "cifar",          # cifar | imagenet (the evaluation network's family)
    "epochs": 600,
    "batch_size": 96,
    "channels": 36,
    "layers": 20,
    "auxiliary": True,
    "auxiliary_weight": 0.4,
    "drop_path_prob": 0.2,       # reached at the last epoch, linearly from 0
    "label_smoothing": 0.0,
    "lr": 0.025,
    "lr_schedule": "cosine",     # cosine (to 0) | linear (to 0)
    "momentum": 0.9,
    "weight_decay": 3e-4,
    "grad_clip": 5.0,
    "channels_last": True,
    "amp": "auto",
    "data": {"name": "cifar10", "root": None, "resolution": 32, "limit": None,
             "crop_padding": 4, "flip": True, "cutout": 16,
             # the data path and its augmentation (noisydarts.data.factory; as in the search config)
             "in_memory": "auto", "memory_budget_gb": None, "workers": None, "augment": "auto", "color_jitter": 0.4},
}

#: Applied over DEFAULTS when ``network: imagenet`` (DARTS mobile setting).
IMAGENET_DEFAULTS: dict = {
    "epochs": 250, "batch_size": 128, "channels": 48, "layers": 14, "drop_path_prob": 0.0,
    "label_smoothing": 0.1, "lr": 0.5, "lr_schedule": "linear", "weight_decay": 3e-5,
    "data": {"resolution": 224, "crop_padding": 0, "cutout": 0},
}


@dataclass
class TrainResult:
    test_acc: float
    best_acc: float
    run_dir: Path
    metrics: list[dict] = field(default_factory=list)
    model: nn.Module | None = None


def resolve_config(config: dict | str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """DEFAULTS <- (IMAGENET_DEFAULTS if network is imagenet) <- config dict/YAML <- --set pairs."""
    layers = []
    if isinstance(config, (str, Path)):
        from .config import load_yaml

        config = load_yaml(config)
    if config:
        layers.append(("config", config))
    if overrides:
        layers.append(("--set", parse_overrides(overrides)))
    network = DEFAULTS["network"]
    for _, layer in layers:
        if isinstance(layer, dict):
            network = layer.get("network", network)
    cfg = copy.deepcopy(DEFAULTS)
    if network == "imagenet":
        _merge(cfg, IMAGENET_DEFAULTS, "imagenet defaults", "")
    for origin, layer in layers:
        _merge(cfg, layer, origin, "")
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    checks = [
        (cfg["network"] in ("cifar", "imagenet"), f"network must be cifar or imagenet, got {cfg['network']!r}"),
        (cfg["epochs"] >= 1, "epochs must be at least 1"),
        (cfg["batch_size"] >= 1, "batch_size must be at least 1"),
        (cfg["channels"] >= 2 and cfg["channels"] % 2 == 0, "channels must be even and >= 2"),
        (cfg["layers"] >= 3, "layers must be at least 3 (two are reduction cells)"),
        (0.0 <= cfg["drop_path_prob"] < 1.0, "drop_path_prob must be in [0, 1)"),
        (cfg["lr"] > 0, "lr must be > 0"),
        (cfg["lr_schedule"] in ("cosine", "linear"), "lr_schedule must be cosine or linear"),
        (cfg["grad_clip"] is None or cfg["grad_clip"] > 0, "grad_clip must be > 0 or null"),
        (cfg["amp"] in ("auto", "on", "off"), "amp must be auto, on or off"),
        (cfg["data"]["limit"] is None or cfg["data"]["limit"] >= 1, "data.limit must be null or >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    from .data import validate_data_config

    validate_data_config(cfg["data"])


def build_model(arch, cfg: dict, num_classes: int, in_channels: int = 3) -> nn.Module:
    from .evaluation import build_network

    dataset = "imagenet" if cfg["network"] == "imagenet" else "cifar10"
    return build_network(arch, dataset, num_classes=num_classes, channels=cfg["channels"], layers=cfg["layers"],
                         auxiliary=cfg["auxiliary"], drop_path_prob=0.0, in_channels=in_channels)


def split_output(out):
    """(logits, aux_logits or None) whatever the network returns (DARTS nets: a tuple in training)."""
    return out if isinstance(out, tuple) else (out, None)


class Trainer:
    def __init__(self, arch, cfg: dict, run_dir: Path, progress: bool = True):
        self.arch, self.cfg, self.run_dir, self.progress = arch, cfg, run_dir, progress
        self.device = pick_device(cfg["device"])
        seed_everything(cfg["seed"])
        d = cfg["data"]
        train_set = open_dataset(d, "train", self.device)  # in memory on the device, or streamed from disk
        test_set = open_dataset(d, "test", self.device)
        self.num_classes = len(train_set.classes)
        indices = torch.arange(len(train_set))
        if d["limit"] is not None:
            indices = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg["seed"]))[: d["limit"]]
        test_idx = torch.arange(len(test_set))
        if d["limit"] is not None:  # a seeded sample of the test set too (it may be sorted by class)
            test_idx = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(cfg["seed"]))[: d["limit"]]
        cl = cfg["channels_last"]
        self.train_batches = make_batches(train_set, indices, cfg["batch_size"], seed=cfg["seed"], train=True, data=d,
                                          channels_last=cl, device=self.device)
        self.test_batches = make_batches(test_set, test_idx, cfg["batch_size"], seed=cfg["seed"], train=False, data=d,
                                         channels_last=cl, device=self.device)
        self.model = build_model(arch, cfg, self.num_classes, train_set.channels).to(self.device)
        if cl:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), cfg["lr"], momentum=cfg["momentum"],
                                         weight_decay=cfg["weight_decay"])
        if cfg["lr_schedule"] == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg["epochs"], eta_min=0.0)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1.0 - e / cfg["epochs"])
        self.start_epoch, self.best_acc = 0, 0.0

    def state_dict(self, next_epoch: int) -> dict:
        return {"epoch": next_epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state(), "best_acc": self.best_acc}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.start_epoch, self.best_acc = state["epoch"], state["best_acc"]

    def weights_payload(self) -> dict:
        return {"arch": str(self.arch), "network": {k: self.cfg[k] for k in ("network", "channels", "layers")},
                "num_classes": self.num_classes, "data": self.cfg["data"]["name"],
                "resolution": self.cfg["data"]["resolution"], "data_config": dict(self.cfg["data"]),
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
        bar = _progress(len(self.train_batches), f"epoch {epoch + 1}/{cfg['epochs']}", self.progress)
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
        return {"train_loss": loss_sum.item() / seen, "train_acc": 100.0 * correct.item() / seen, "lr": lr}

    def test(self) -> dict:
        r = evaluate_model(self.model, self.test_batches, self.cfg, self.device)
        return {"test_loss": r["loss"], "test_acc": r["top1"], "test_top5": r["top5"]}

    def run(self, stop_after: int | None = None) -> TrainResult:
        cfg, metrics_path = self.cfg, self.run_dir / "metrics.jsonl"
        last = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after)
        for epoch in range(self.start_epoch, last):
            t0 = time.perf_counter()
            record = {"epoch": epoch + 1, **self.train_epoch(epoch), **self.test()}
            record["epoch_time"] = round(time.perf_counter() - t0, 3)
            append_jsonl(metrics_path, record)
            if record["test_acc"] > self.best_acc or epoch == 0:
                self.best_acc = max(self.best_acc, record["test_acc"])
                atomic_torch_save(self.weights_payload(), self.run_dir / BEST)
            atomic_torch_save(self.state_dict(epoch + 1), self.run_dir / CHECKPOINT)
            if self.progress:
                print(f"epoch {record['epoch']}: train loss {record['train_loss']:.3f} acc {record['train_acc']:.1f} | "
                      f"test loss {record['test_loss']:.3f} acc {record['test_acc']:.2f} | {record['epoch_time']:.1f}s",
                      flush=True)
        metrics = read_jsonl(metrics_path)
        if last == cfg["epochs"]:
            atomic_torch_save(self.weights_payload(), self.run_dir / FINAL)
        test_acc = metrics[-1]["test_acc"] if metrics else float("nan")
        return TrainResult(test_acc=test_acc, best_acc=self.best_acc, run_dir=self.run_dir, metrics=metrics,
                           model=self.model)


@torch.no_grad()
def evaluate_model(model: nn.Module, batches, cfg: dict, device) -> dict:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of ``model`` in eval mode."""
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
    return {"loss": loss_sum.item() / seen, "top1": 100.0 * top1.item() / seen, "top5": 100.0 * top5.item() / seen,
            "images": seen}


def train(arch, config: dict | str | Path | None = None, *, out: str | Path | None = None,
          resume: str | Path | None = None, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train ``arch`` (anything :func:`noisydarts.evaluation.load_arch` accepts) from scratch.

    ``config``: a partial config dict or YAML file over :data:`DEFAULTS`. ``resume``: continue the
    run in that directory (its own config and architecture). ``stop_after``: stop once that many
    epochs are done, leaving a resumable run."""
    from .evaluation import load_arch

    if resume is not None:
        if arch is not None or config is not None or out is not None:
            raise UserError("--resume continues a run with its own architecture and config: drop GENOTYPE/--set/--out")
        run_dir = Path(resume)
        if not (run_dir / CHECKPOINT).is_file() or not (run_dir / "config.yaml").is_file():
            raise UserError(f"--resume {run_dir}: no checkpoint.pt and config.yaml there; give a training run directory")
        cfg = resolve_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
        arch = load_arch((run_dir / "arch.txt").read_text().strip())
        trainer = Trainer(arch, cfg, run_dir, progress)
        trainer.load_state_dict(torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False))
        records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["epoch"] <= trainer.start_epoch]
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        return trainer.run(stop_after)

    arch = load_arch(arch)
    cfg = config if isinstance(config, dict) and config.keys() == DEFAULTS.keys() else resolve_config(config)
    run_dir, created = new_run_dir(out, "train")
    try:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        atomic_write_text(run_dir / "arch.txt", str(arch) + "\n")
        trainer = Trainer(arch, cfg, run_dir, progress)
    except BaseException:
        for name in ("config.yaml", "arch.txt"):
            (run_dir / name).unlink(missing_ok=True)
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    return trainer.run(stop_after)


# --- trained networks: load, evaluate, export ---------------------------------------------------

def load_trained(source: str | Path, num_classes: int | None = None) -> tuple[nn.Module, dict]:
    """The network in a weights file (``best.pt``/``weights.pt``) or a run directory (its
    ``weights.pt``, else ``best.pt``), in eval mode, and the file's payload."""
    from .evaluation import load_arch

    path = Path(source)
    if path.is_dir():
        path = next((path / n for n in (FINAL, BEST) if (path / n).is_file()), None)
        if path is None:
            raise UserError(f"{source} has no weights.pt or best.pt: give a training run directory or a weights file")
    if not path.is_file():
        raise UserError(f"weights {source} not found: give a training run directory or a weights file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(payload, dict) or not {"arch", "network", "num_classes", "model"} <= set(payload):
            raise ValueError("missing entries")
    except Exception as e:
        raise UserError(f"{path} is not a noisydarts weights file ({type(e).__name__}): give best.pt or weights.pt of a training run") from e
    if num_classes is not None and num_classes != payload["num_classes"]:
        raise UserError(f"the weights in {path} classify {payload['num_classes']} classes but the data has {num_classes}: "
                        "evaluate on the dataset the network was trained on")
    cfg = {**DEFAULTS, **payload["network"], "auxiliary": any(k.startswith("auxiliary_head") for k in payload["model"])}
    model = build_model(load_arch(payload["arch"]), cfg, payload["num_classes"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
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
    """Write the trained network (eval mode, logits only) as TorchScript or ONNX; returns the file."""
    if fmt not in ("torchscript", "onnx"):
        raise UserError(f"unknown export format {fmt!r}: use torchscript or onnx")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError as e:
            raise UserError("ONNX export needs the onnx package: pip install onnx (or use --format torchscript)") from e
    model, payload = load_trained(source)
    r = payload.get("resolution", 32)
    example = torch.randn(1, 3, r, r)
    base = Path(source) if Path(source).is_dir() else Path(source).parent
    out = Path(out) if out else base / ("model.ts" if fmt == "torchscript" else "model.onnx")
    if out.exists():
        raise UserError(f"{out} already exists: choose another --out")
    if fmt == "torchscript":
        import io

        from .runs import atomic_write_bytes

        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        atomic_write_bytes(out, buffer.getvalue())
    else:
        torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    return out

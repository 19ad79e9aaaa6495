"""``noisydarts.train``: train a found architecture from scratch (start or resume a training
run), and evaluate or export the trained network.

``train(arch, config, out=, resume=)`` resolves the config (:mod:`noisydarts.train.config`),
creates or resumes the run directory (:mod:`noisydarts.runtime.lifecycle`, as a search does) and
runs the :class:`~noisydarts.train.loop.Trainer`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from ..data import make_batches, open_dataset
from ..errors import UserError
from ..models import GENOTYPE_FILE, resolve_genotype
from ..runtime import runs
from ..runtime.device import pick_device, precision
from ..runtime.lifecycle import RunLifecycle
from ..spaces import genotype_from_payload, genotype_payload, space_of
from .config import DEFAULTS, resolve_config, search_recipe
from .loop import BEST, CHECKPOINT_KEYS, FINAL, TrainResult, Trainer, evaluate_model

#: What continues, and what does not, when a training run is resumed with another number of processes.
WORLD_SIZE_NOTE = ("the data order and weights continue as they were, but the drop-path draws and per-process "
                   "BatchNorm statistics differ")


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
    if resume is not None:
        if arch is not None or config is not None or overrides or out is not None:
            raise UserError("--resume continues a run with its own architecture and config: drop GENOTYPE/--set/--out")
        # The recipe is the architecture's space's; resume first says what is missing, if anything.
        run_dir = runs.resume_dir(resume, "train")
        genotype = resolve_genotype(run_dir) if RunLifecycle.resumable(run_dir) else None
        with RunLifecycle.resume("train", run_dir, lambda raw: resolve_config(raw, arch=genotype),
                                 keys=CHECKPOINT_KEYS, world_size_note=WORLD_SIZE_NOTE) as run:
            trainer = Trainer(genotype, run.cfg, run.run_dir, progress)
            run.restore(trainer.load_state_dict, f"config.yaml and {GENOTYPE_FILE}")
            return _run(trainer, run, stop_after)

    genotype = resolve_genotype(arch)
    cfg = resolve_config(config, overrides, arch=genotype, search=search_recipe(arch))
    files = {GENOTYPE_FILE: json.dumps(genotype_payload(genotype), indent=1) + "\n"}  # the run names its architecture
    with RunLifecycle.create("train", cfg, out=out, label="train", files=files) as run:
        trainer = Trainer(genotype, cfg, run.run_dir, progress)
        run.begin()
        return _run(trainer, run, stop_after)


def _run(trainer: Trainer, run: RunLifecycle, stop_after: int | None) -> TrainResult:
    if trainer.progress:
        print(run.start_line(trainer.device, precision(trainer.cfg, trainer.device), trainer.world), flush=True)
    return trainer.run(stop_after)


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
    (:mod:`noisydarts.models.export`); returns the file. ``out``: a file, or a directory to put
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

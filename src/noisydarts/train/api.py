"""``noisydarts.train``: train a found architecture from scratch (start or resume a training
run), and evaluate or export the trained network.

``train(arch, config, out=, resume=)`` resolves the config (:mod:`noisydarts.train.config`),
creates or resumes the run directory (:mod:`noisydarts.runtime.lifecycle`, as a search does) and
runs the :class:`~noisydarts.train.loop.Trainer`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from ..data import make_batches, open_dataset
from ..data.record import read_data_record
from ..errors import UserError
from ..models import GENOTYPE_FILE, resolve_genotype
from ..runtime import runs
from ..runtime.device import pick_device, precision
from ..runtime.lifecycle import RunLifecycle
from ..spaces import genotype_from_payload, genotype_payload, space_of
from .callbacks import default_callbacks
from .config import DEFAULTS, resolve_config, search_recipe, search_run_config, search_run_dir
from .preprocessing import export_metadata, trained_classes
from .loop import BEST, CHECKPOINT_KEYS, FINAL, TrainResult, Trainer, evaluate_model

#: What continues, and what does not, when a training run is resumed with another number of processes.
WORLD_SIZE_NOTE = ("the data order and weights continue as they were, but the drop-path draws and per-process "
                   "BatchNorm statistics differ")


def train(arch, config: dict | str | Path | None = None, *, overrides: list[str] | None = None,
          out: str | Path | None = None, resume: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None, callbacks=()) -> TrainResult:
    """Train ``arch`` (anything :func:`noisydarts.models.resolve_genotype` accepts: a zoo name, a
    run directory, a genotype.json, genotype text of any space) from scratch.

    ``config``: a partial config (dict or YAML file) over the recipe of the architecture's space;
    ``overrides``: ``KEY=VALUE`` strings over that. ``resume``: continue the run in that directory
    (its own config and architecture). ``stop_after``: stop once that many epochs are done,
    leaving a resumable run. ``callbacks``: :class:`noisydarts.runtime.callbacks.Callback` objects
    whose ``on_epoch``/``on_end`` the loop calls, after those the config asks for (``plots``,
    ``tensorboard``: :mod:`noisydarts.train.callbacks`).

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
            callbacks = (*default_callbacks(run.cfg), *callbacks)  # a missing package: said before any work
            finished = run.finished(FINAL)  # nothing to resume: said, then its result as always
            trainer = Trainer(genotype, run.cfg, run.run_dir, progress and finished is None)
            run.restore(trainer.load_state_dict, f"config.yaml and {GENOTYPE_FILE}")
            if finished and run.main:
                print(finished, flush=True)
            return _run(trainer, run, stop_after, callbacks)

    genotype = resolve_genotype(arch)
    cfg = training_config(arch, config, overrides, genotype)
    callbacks = (*default_callbacks(cfg), *callbacks)  # a missing package: said before the run directory exists
    files = {GENOTYPE_FILE: json.dumps(genotype_payload(genotype), indent=1) + "\n"}  # the run names its architecture
    with RunLifecycle.create("train", cfg, out=out, label="train", files=files) as run:
        trainer = Trainer(genotype, cfg, run.run_dir, progress)
        if not _names_data(config, overrides):  # on the search's data: still the search's classes?
            check_search_classes(arch, cfg, trainer.classes)
        run.begin()
        return _run(trainer, run, stop_after, callbacks)


# --- what a search run hands on to the training of its architecture ------------------------------

#: The data keys a search run hands on to training (what data, at what size, split how); the
#: augmentation strengths and ``limit`` are the training recipe's own.
CARRIED_DATA_KEYS = ("name", "root", "resolution", "resize", "augment", "in_memory", "val_split", "split_seed",
                     "cache", "cache_dir")


def carried_data(arch) -> dict:
    """The data section a search run hands on: its dataset, resolution and split (see
    :data:`CARRIED_DATA_KEYS`), so that ``noisydarts train RUN`` trains on what was searched."""
    section = search_run_config(arch).get("data")
    if not isinstance(section, dict):
        return {}
    return {k: section[k] for k in CARRIED_DATA_KEYS if k in section and k in DEFAULTS["data"]}


def training_config(arch, config=None, overrides=None, genotype=None) -> dict:
    """The resolved training config of ``arch``: the training defaults and the space's recipe,
    then what a search run hands on (its ``train`` section and its data), then ``config`` and
    ``overrides``."""
    genotype = resolve_genotype(arch) if genotype is None else genotype
    layer = dict(search_recipe(arch))
    data = carried_data(arch)
    if data:
        layer["data"] = {**data, **(layer.get("data") or {})}
    return resolve_config(config, overrides, arch=genotype, search=layer)


def _names_data(config, overrides) -> bool:
    """Whether the user named the training data (``--data``, ``--set data.name=``, a config's data.name)."""
    from ..config import load_yaml, parse_overrides

    layers = [load_yaml(config) if isinstance(config, (str, Path)) else config or {}, parse_overrides(overrides or [])]
    return any(isinstance(layer.get("data"), dict) and "name" in layer["data"] for layer in layers)


def check_search_classes(arch, cfg: dict, classes: list[str]) -> None:
    """Training on the search's own data: the classes must still be the search's (a folder
    changed since the search is named, not trained on silently)."""
    run = search_run_dir(arch)
    record = read_data_record(run) if run is not None else None
    if record is None or str(record.get("name")) != str(cfg["data"]["name"]) or record["classes"] == classes:
        return
    gone = [c for c in record["classes"] if c not in classes]
    new = [c for c in classes if c not in record["classes"]]
    raise UserError(f"{cfg['data']['name']} now holds other classes than when {run} searched on it (gone: "
                    f"{', '.join(gone[:5]) or '-'}; new: {', '.join(new[:5]) or '-'}): restore the folder, or train "
                    f"on it as it is now with --data {cfg['data']['name']}")


def _run(trainer: Trainer, run: RunLifecycle, stop_after: int | None, callbacks=()) -> TrainResult:
    if trainer.progress:
        print(run.start_line(trainer.device, precision(trainer.cfg, trainer.device), trainer.world), flush=True)
        print(trainer.data_line(), flush=True)
    return trainer.run(stop_after, callbacks)


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
    (:mod:`noisydarts.models.export`) carrying its class names and preprocessing; returns the
    file. ``out``: a file, or a directory (an existing one, or a path ending in ``/``) to put
    ``model.ts`` / ``model.onnx`` in (missing directories are created); default: beside the weights."""
    from ..models.export import FORMATS, check_format, export_bytes

    check_format(fmt)
    model, payload = load_trained(source)
    classes, preprocessing = trained_classes(payload, source)
    example = torch.randn(2, *preprocessing["input_size"])
    base = Path(source) if runs.path_kind(source) == "dir" else Path(source).parent
    name = "model" + FORMATS[fmt]
    if out is None:
        out = base / name
    elif runs.path_kind(out) == "dir" or str(out).endswith(("/", os.sep)):
        out = Path(out) / name
    else:
        out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists: choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out.parent} ({runs.os_reason(e)}): choose another --out") from e
    metadata = export_metadata({**payload, "classes": classes, "preprocessing": preprocessing})
    runs.atomic_write_bytes(out, export_bytes(fmt, model, example, metadata))
    return out


def _in_channels(payload: dict) -> int:
    """Image channels the network takes: the input width of its first convolution."""
    return next((int(v.shape[1]) for v in payload["model"].values() if getattr(v, "ndim", 0) == 4), 3)

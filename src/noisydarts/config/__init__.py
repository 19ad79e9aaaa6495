"""Configuration: defaults, presets, YAML files and ``--set KEY=VALUE`` overrides.

A config is a plain nested dict. It is resolved in layers, later ones winning::

    DEFAULTS  <-  preset (presets/NAME.yaml)  <-  --config FILE.yaml  <-  --set KEY=VALUE ...

Every key must exist in the defaults (a typo is an error that names the closest valid key, never
silently ignored) and keep its type: the default's type, or for a key that may be null the type
declared in :data:`NULLABLE`; list items keep the type of the default's items; floats must be
finite. Sections with a ``name`` (``space``, ``estimator``) take their other keys from the chosen
implementation's ``DEFAULTS``, so ``--set space.name=nb201`` brings in the NB201 keys; a layer that
switches a section to another name starts that section afresh, dropping the keys earlier layers
set for the previous one.

A run's ``config.yaml`` ends with a ``provenance`` section (versions, command line, git commit);
it is ignored when the file is read back (``--resume``, or ``--config`` of a new run).
"""

from __future__ import annotations

import copy
import difflib
import math
from importlib import resources
from pathlib import Path

import yaml

from ..errors import UserError, suggest

#: What `noisydarts search` and `noisydarts.search()` run when given no configuration.
DEFAULT_PRESET = "nb201-quick"

#: Data-parallel runs under torchrun (noisydarts.distributed), search and train configs alike.
DISTRIBUTED_DEFAULTS: dict = {
    "backend": "auto",      # auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    "sync_bn": False,       # batch statistics over all ranks' slices (SyncBatchNorm)
    "noise_std": "local",   # NoisyDARTS sigma = lambda * std(x) of this rank's slice (local) or of all (global)
    "timeout_min": 30.0,    # how long a collective waits for the other ranks before the run fails
}
DISTRIBUTED_BACKENDS = ("auto", "gloo", "nccl")
NOISE_STD = ("local", "global")

DEFAULTS: dict = {
    "description": "",
    "seed": 0,
    "device": "auto",          # auto | cpu | cuda | cuda:N
    "epochs": 50,
    "batch_size": 64,
    "warmup_epochs": 0,        # epochs with alpha frozen, only the weights train
    "train_portion": 0.5,      # search-train / search-val split of the training set
    "channels_last": True,
    "amp": "auto",             # auto (bf16 autocast on CUDA) | on | off
    "compile": "off",          # off | default | reduce-overhead | max-autotune: torch.compile of each mixed edge
    "data": {
        "name": "cifar10-mini",  # cifar10-mini | cifar10 | cifar100 | a directory
        "root": None,            # where torchvision datasets are (or get downloaded)
        "resolution": 32,
        "limit": None,           # use only the first N training images (after shuffling by seed)
        "crop_padding": 4,
        "flip": True,
        "cutout": 0,
        "in_memory": "auto",     # auto | true | false: decode into memory, or stream a folder from disk
        "memory_budget_gb": None,  # auto streams above this decoded size (null: half the free RAM)
        "workers": None,         # streaming DataLoader processes (null: one per core, at most 8)
        "augment": "auto",       # auto | cifar (pad-crop, flip, cutout) | imagenet (random-resized crop, flip, jitter)
        "color_jitter": 0.4,     # imagenet augmentation's brightness/contrast/saturation strength
    },
    "space": {"name": "darts"},
    "noise": {
        "enabled": True,
        "distribution": "gaussian",  # gaussian | uniform
        "mixture": "additive",       # additive | multiplicative
        "mean": 0.0,
        "lambda": 0.2,
        "decay": "none",             # none | cosine
        "reduction_skips": True,     # noise on stride-2 skips (factorized reduce) too
        "sigma": "batch",            # std(x) of the whole batch tensor | per sample
        "position": "output",        # noise on the skip op's output (release) | input (Eq. 6)
        "weight_step": True,         # noise in the weight step too (false: architecture step only)
        "skip_drop_path": 0.0,       # the release's search drop-path on every skip branch (0.3 there)
    },
    "edge": {
        "weighting": "softmax",      # softmax (DARTS) | edge_norm (PC-DARTS) | si_vdnas (SI-VDNAS)
        "partial_channels": 1,       # K of PC-DARTS; 1 = all channels
    },
    "vdnas": {                       # edge.weighting: si_vdnas (noisydarts.sivdnas)
        "variant": "si",             # si | h (H-VDNAS) | v (V-VDNAS)
        "parametrization": "softmax",  # softmax | raw
        "granularity": "sample",     # Gaussian noise per sample | per batch
        "init_p": 0.1,               # initial dropout rate of ops and edges
        "anneal": 0.95,              # (1 - lambda)^2 <- anneal * (1 - lambda)^2
        "anneal_every": "epoch",     # epoch | step
        "kl_weight": None,           # null: KL / (search-val examples)
        "derivation": "auto",        # auto | sample | deterministic
    },
    "weights": {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0},
    "arch": {
        "lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3,
        # gradient projection between the edges of a cell (noisydarts.gradients.projection)
        "projection": {
            "groups": "none",            # none | edge_in | edge_out
            "order": "random",           # random (PCGrad) | short_to_long | long_to_short
            "include_beta": False,       # project [g_alpha, g_beta] of an edge as one vector
            "length": "through",         # edge length L: through (longest path through the edge) | downstream
        },
    },
    "estimator": {"name": "first_order"},
    "monitor": {                     # measurements during the search (callbacks, noisydarts.hessian)
        "hessian_every": 0,          # dominant eigenvalue of the alpha Hessian every N epochs (0 = off)
        "hessian_batches": 1,        # fixed search-val batches it is measured on
        "hessian_batch_size": None,  # their size (null = batch_size); smaller saves memory, changes L_val's BN
        "hessian_iterations": 20,    # at most this many Lanczos steps (Hessian-vector products)
        "hessian_tol": 1.0e-2,       # relative residual at which Lanczos stops (bounds the relative error)
        "hessian_noise": True,       # NoisyDARTS noise on in the measured loss (with a fixed seed)
    },
    "early_stop": {                  # both off by default (noisydarts.early_stop)
        "robustdarts": {"enabled": False, "window": 5, "delta": 4, "factor": 1.3, "start_epoch": 10},
        "dartsplus": {"enabled": False, "skips": 2},
    },
    # the evaluation recipe of this search's architectures: `noisydarts train RUN` layers these
    # over the space's recipe (null = the space's value)
    "train": {"drop_path_prob": None},
    "plots": True,                   # plots/ and report.{md,html} at the end of a search
    "tensorboard": False,            # per-epoch scalars in RUN_DIR/tensorboard (needs tensorboard)
    "distributed": dict(DISTRIBUTED_DEFAULTS),
}

#: Keys that may be null, with the type of their other values (search and ``noisydarts train``
#: configs alike). A key whose default is null must be listed: its type cannot be read from the
#: default (tests/test_config.py checks every default of every space and estimator).
NULLABLE: dict[str, type] = {
    "data.root": str,
    "data.limit": int,
    "data.memory_budget_gb": float,
    "data.workers": int,
    "train.drop_path_prob": float,
    "vdnas.kl_weight": float,
    "monitor.hessian_batch_size": int,
    "weights.grad_clip": float,
    "grad_clip": float,          # noisydarts train
    "estimator.xi": float,
    "network.se": float,         # noisydarts train, mbv2 networks: null = as the genotype says
    "network.activation": str,
}

#: Keys that take "auto" or a boolean (auto | true | false).
AUTO_OR_BOOL = {"data.in_memory", "space.checkpoint"}

#: Keys whose values are words such as on and off, which YAML 1.1 reads as booleans
#: (``--set amp=off`` gives False): a boolean is taken as the word ``on`` or ``off``.
ON_OFF_WORDS = {"amp", "compile"}

#: The top-level key of a run's config.yaml that records how the run was made; never a setting.
PROVENANCE = "provenance"


def _named_sections() -> dict:
    from ..methods.estimators import ESTIMATORS
    from ..spaces import SPACES

    return {"space": SPACES, "estimator": ESTIMATORS}


# --- presets --------------------------------------------------------------------------------

def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("noisydarts.presets").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a preset, as shipped."""
    if name not in preset_names():
        raise UserError(f"unknown preset {name!r}{suggest(name, preset_names())}: choose from "
                        f"{', '.join(preset_names())} (see `noisydarts presets`)")
    return resources.files("noisydarts.presets").joinpath(f"{name}.yaml").read_text()


def load_preset(name: str) -> dict:
    return yaml.safe_load(preset_text(name)) or {}


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict (its ``provenance`` section, if any, dropped)."""
    from ..errors import path_kind, read_text

    path = Path(path)
    if path_kind(path) != "file":
        raise UserError(f"config file {path} not found: give the path of a YAML file")
    text = read_text(path, "a YAML config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    except RecursionError as e:
        raise UserError(f"config file {path} is nested too deeply to be a config") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    data.pop(PROVENANCE, None)
    return data


def parse_overrides(pairs: list[str]) -> dict:
    """``["noise.lambda=0.1", "epochs=10"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r} is not KEY=VALUE: write e.g. --set noise.lambda=0.1")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part} is set as a value and as a section")
        node[parts[-1]] = parsed
    return out


# --- resolution -------------------------------------------------------------------------------

def resolve(preset: str | None = None, config_file: str | Path | dict | None = None,
            overrides: list[str] | dict | None = None) -> dict:
    """Merge the layers over the defaults, check every key and value, return the full config."""
    layers = []
    if preset:
        layers.append(("preset " + preset, load_preset(preset)))
    if config_file is not None:
        layers.append(("config file", config_file if isinstance(config_file, dict) else load_yaml(config_file)))
    if overrides:
        layers.append(("--set", overrides if isinstance(overrides, dict) else parse_overrides(overrides)))

    cfg = copy.deepcopy(DEFAULTS)
    sections = _named_sections()
    for section, registry in sections.items():
        cfg[section] = _named_section(section, registry, cfg[section]["name"], "defaults")
    for origin, layer in layers:
        if not isinstance(layer, dict):
            raise UserError(f"{origin}: the config must be a mapping of keys to values")
        for section, registry in sections.items():
            named = layer.get(section)
            if isinstance(named, dict) and "name" in named and named["name"] != cfg[section]["name"]:
                cfg[section] = _named_section(section, registry, named["name"], origin)
        _merge(cfg, layer, origin, prefix="")
    validate(cfg)
    return cfg


def _named_section(section: str, registry: dict, name, origin: str) -> dict:
    """A fresh ``space`` / ``estimator`` section: the name and that implementation's defaults."""
    if not isinstance(name, str) or name not in registry:
        raise UserError(f"{origin}: unknown {section}.name {name!r}{suggest(name, registry)}: choose from "
                        f"{', '.join(registry)}")
    return {"name": name, **copy.deepcopy(registry[name].DEFAULTS)}


def _paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in d.items():
        out += _paths(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def _key_hint(key, base: dict, prefix: str, root: dict) -> str:
    """The closest valid key: in the same section, else anywhere (a key given in the wrong section,
    e.g. ``lambda`` for ``noise.lambda``)."""
    here = difflib.get_close_matches(str(key), [str(k) for k in base], 1, 0.6)
    if here:
        return f" (did you mean {prefix + here[0]!r}?)"
    paths = _paths(root)
    full = difflib.get_close_matches(prefix + str(key), paths, 1, 0.6)
    if full:
        return f" (did you mean {full[0]!r}?)"
    leaves: dict[str, str] = {}
    for p in paths:
        leaves.setdefault(p.rsplit(".", 1)[-1], p)
    leaf = difflib.get_close_matches(str(key), list(leaves), 1, 0.6)
    return f" (did you mean {leaves[leaf[0]]!r}?)" if leaf else ""


def _merge(base: dict, layer: dict, origin: str, prefix: str, root: dict | None = None) -> None:
    """Merge ``layer`` into ``base`` (the config at ``prefix``), checking every key and value."""
    root = base if root is None else root
    if not isinstance(layer, dict):
        raise UserError(f"{origin}: {prefix.rstrip('.') or 'the config'} must be a mapping")
    for key, value in layer.items():
        path = prefix + str(key)
        if not prefix and key == PROVENANCE:
            continue  # how an earlier run was made, copied along with its config.yaml
        if key not in base:
            options = ", ".join(sorted(map(str, base)))
            raise UserError(f"{origin}: unknown config key {path!r}{_key_hint(key, base, prefix, root)}; "
                            f"valid keys here: {options}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"{origin}: {path} is a section; set its keys, e.g. {path}.{next(iter(base[key]))}=...")
            _merge(base[key], value, origin, path + ".", root)
        else:
            base[key] = _coerce(path, base[key], value, origin)


_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string", list: "a list"}


def _coerce(path: str, default, value, origin: str):
    """``value`` as the type of ``path``: the type of its default, or its :data:`NULLABLE` type."""
    declared = NULLABLE.get(path)
    if value is None:
        if declared is not None or default is None:
            return None
        raise UserError(f"{origin}: {path} needs a value ({_TYPE_WORDS.get(type(default), type(default).__name__)}), "
                        f"e.g. {path}={_example(default)}")
    kind = declared or (type(default) if default is not None else None)
    if kind is None:  # a null default nobody declared: take plain scalars only
        if not isinstance(value, (str, int, float, bool)):
            raise UserError(f"{origin}: {path} must be a single value, got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list):
            raise UserError(f"{origin}: {path} must be a list, e.g. {path}={_example(default)}, got {value!r}")
        item_kind = type(default[0]) if default else None
        return [value_ if item_kind is None else _scalar(f"{path}[{i}]", item_kind, value_, origin)
                for i, value_ in enumerate(value)]
    return _scalar(path, kind, value, origin, default)


def _scalar(path: str, kind: type, value, origin: str, default=None):
    if path in AUTO_OR_BOOL and isinstance(value, bool):
        return value
    if path in ON_OFF_WORDS and isinstance(value, bool):
        return "on" if value else "off"
    if kind is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-5" (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{origin}: {path} must be a finite number, got {value}")
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool) \
            or not isinstance(value, kind):
        raise UserError(f"{origin}: {path} must be {kind.__name__} ({_TYPE_WORDS.get(kind, kind.__name__)}), "
                        f"got {value!r}")
    return value


def _example(default) -> str:
    if isinstance(default, list):
        return "[" + ",".join(map(str, default)) + "]"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default) if default != "" else "TEXT"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def check_choice(key: str, value, choices) -> None:
    """``value`` must be one of ``choices``; the message names the closest one."""
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}{suggest(value, choices)}")


def validate(cfg: dict) -> None:
    """Range checks that types alone don't catch; each failure names the key and the fix."""
    _check(0 <= cfg["seed"] < 2**62, f"seed must be an integer in [0, 2^62), got {cfg['seed']}")
    _check(cfg["epochs"] >= 1, f"epochs must be at least 1, got {cfg['epochs']}")
    _check(cfg["batch_size"] >= 1, f"batch_size must be positive, got {cfg['batch_size']}")
    _check(0 <= cfg["warmup_epochs"], f"warmup_epochs must be >= 0, got {cfg['warmup_epochs']}")
    # A preset's warm-up (PC-DARTS, SI-VDNAS: 15 of 50 epochs) outlives a shortened run: alpha would
    # never train and the "result" would be its random initialization.
    _check(cfg["warmup_epochs"] < cfg["epochs"],
           f"warmup_epochs ({cfg['warmup_epochs']}) must be below epochs ({cfg['epochs']}): alpha is frozen for the "
           f"warm-up and would never train; shorten it, e.g. --set warmup_epochs={cfg['epochs'] * 3 // 10} "
           f"(30 %, the share of the PC-DARTS and SI-VDNAS recipes' 15 of 50 epochs)")
    _check(0.0 < cfg["train_portion"] < 1.0, f"train_portion must be in (0, 1), got {cfg['train_portion']}")
    check_choice("amp", cfg["amp"], ("auto", "on", "off"))
    from ..nn.compiling import MODES

    check_choice("compile", cfg["compile"], MODES)
    noise = cfg["noise"]
    _check(noise["lambda"] >= 0, f"noise.lambda must be >= 0 (it scales std(x)), got {noise['lambda']}")
    from ..methods.noise import DECAYS, DISTRIBUTIONS, MIXTURES, POSITIONS, SIGMAS

    check_choice("noise.distribution", noise["distribution"], DISTRIBUTIONS)
    check_choice("noise.mixture", noise["mixture"], MIXTURES)
    check_choice("noise.decay", noise["decay"], DECAYS)
    check_choice("noise.sigma", noise["sigma"], SIGMAS)
    check_choice("noise.position", noise["position"], POSITIONS)
    _check(0.0 <= noise["skip_drop_path"] < 1.0,
           f"noise.skip_drop_path must be in [0, 1) (the release uses 0.3), got {noise['skip_drop_path']}")
    from ..methods.weightings import WEIGHTINGS

    check_choice("edge.weighting", cfg["edge"]["weighting"], WEIGHTINGS)
    if hasattr(WEIGHTINGS[cfg["edge"]["weighting"]], "validate"):
        WEIGHTINGS[cfg["edge"]["weighting"]].validate(cfg)
    _check(cfg["edge"]["partial_channels"] >= 1, "edge.partial_channels must be >= 1 (1 = all channels)")
    w = cfg["weights"]
    _check(w["lr"] > 0 and w["lr_min"] >= 0, "weights.lr must be > 0 and weights.lr_min >= 0")
    _check(w["grad_clip"] is None or w["grad_clip"] > 0, "weights.grad_clip must be > 0 (or null for none)")
    _check(w["momentum"] >= 0 and w["weight_decay"] >= 0, "weights.momentum and weights.weight_decay must be >= 0")
    _check(cfg["arch"]["lr"] > 0, "arch.lr must be > 0")
    _check(cfg["arch"]["weight_decay"] >= 0, "arch.weight_decay must be >= 0")
    _check(len(cfg["arch"]["betas"]) == 2 and all(0 <= b < 1 for b in cfg["arch"]["betas"]),
           "arch.betas must be two numbers in [0, 1), e.g. [0.5, 0.999]")
    validate_distributed(cfg["distributed"])
    d = cfg["data"]
    _check(bool(d["name"]), "data.name must name a dataset (cifar10-mini, cifar10, cifar100) or a directory")
    _check(d["resolution"] >= 8, f"data.resolution must be at least 8, got {d['resolution']}")
    _check(d["limit"] is None or d["limit"] >= 2, "data.limit must be null or at least 2 images")
    _check(d["crop_padding"] >= 0 and d["cutout"] >= 0, "data.crop_padding and data.cutout must be >= 0")
    from ..data import validate_data_config

    validate_data_config(d)
    m = cfg["monitor"]
    _check(m["hessian_every"] >= 0, f"monitor.hessian_every must be >= 0 (0 = off), got {m['hessian_every']}")
    _check(m["hessian_batches"] >= 1, f"monitor.hessian_batches must be at least 1, got {m['hessian_batches']}")
    _check(m["hessian_batch_size"] is None or m["hessian_batch_size"] >= 2,
           f"monitor.hessian_batch_size must be null (the search's batch size) or at least 2, got {m['hessian_batch_size']}")
    _check(m["hessian_iterations"] >= 1, f"monitor.hessian_iterations must be at least 1, got {m['hessian_iterations']}")
    _check(m["hessian_tol"] > 0, f"monitor.hessian_tol must be > 0, got {m['hessian_tol']}")
    rd, dp = cfg["early_stop"]["robustdarts"], cfg["early_stop"]["dartsplus"]
    _check(not rd["enabled"] or m["hessian_every"] >= 1,
           "early_stop.robustdarts needs the Hessian monitor: set monitor.hessian_every (the release measures every 2 epochs)")
    _check(rd["window"] >= 1 and rd["delta"] >= 1 and rd["start_epoch"] >= 0,
           "early_stop.robustdarts: window and delta must be at least 1, start_epoch at least 0")
    _check(rd["factor"] > 0, f"early_stop.robustdarts.factor must be > 0, got {rd['factor']}")
    _check(dp["skips"] >= 1, f"early_stop.dartsplus.skips must be at least 1, got {dp['skips']}")
    from ..methods.gradients import validate as validate_gradient_transforms

    validate_gradient_transforms(cfg)
    sections = _named_sections()
    for section in sections:
        module = sections[section][cfg[section]["name"]]
        if hasattr(module, "validate"):
            module.validate(cfg)


def validate_distributed(section: dict) -> None:
    check_choice("distributed.backend", section["backend"], DISTRIBUTED_BACKENDS)
    check_choice("distributed.noise_std", section["noise_std"], NOISE_STD)
    _check(section["timeout_min"] > 0, f"distributed.timeout_min must be > 0, got {section['timeout_min']}")


def dump(cfg: dict, provenance: dict | None = None) -> str:
    """The YAML of a config; with ``provenance``, that section last (see :func:`noisydarts.runs.provenance`)."""
    text = yaml.safe_dump(cfg, sort_keys=False)
    if provenance is not None:
        text += yaml.safe_dump({PROVENANCE: provenance}, sort_keys=False)
    return text

"""Configuration: defaults, presets, YAML files and ``--set KEY=VALUE`` overrides.

A config is a plain nested dict. It is resolved in layers, later ones winning::

    DEFAULTS  <-  preset (presets/NAME.yaml)  <-  --config FILE.yaml  <-  --set KEY=VALUE ...

Every key must exist in the defaults (a typo is an error, never silently ignored) and keep its
type. Sections with a ``name`` (``space``, ``estimator``) take their other keys from the chosen
implementation's ``DEFAULTS``, so ``--set space.name=nb201`` brings in the NB201 keys.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from .errors import UserError

#: What `noisydarts search` and `noisydarts.search()` run when given no configuration.
DEFAULT_PRESET = "nb201-quick"

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
    "data": {
        "name": "cifar10-mini",  # cifar10-mini | cifar10 | cifar100 | a directory
        "root": None,            # where torchvision datasets are (or get downloaded)
        "resolution": 32,
        "limit": None,           # use only the first N training images (after shuffling by seed)
        "crop_padding": 4,
        "flip": True,
        "cutout": 0,
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
        "weighting": "softmax",      # softmax (DARTS) | edge_norm (PC-DARTS)
        "partial_channels": 1,       # K of PC-DARTS; 1 = all channels
    },
    "weights": {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0},
    "arch": {"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3},
    "estimator": {"name": "first_order"},
    "plots": True,                   # plots/ and report.{md,html} at the end of a search
    "tensorboard": False,            # per-epoch scalars in RUN_DIR/tensorboard (needs tensorboard)
}


def _named_sections() -> dict:
    from .estimators import ESTIMATORS
    from .spaces import SPACES

    return {"space": SPACES, "estimator": ESTIMATORS}


# --- presets --------------------------------------------------------------------------------

def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("noisydarts.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict:
    if name not in preset_names():
        raise UserError(f"unknown preset {name!r}: choose from {', '.join(preset_names())} (see `noisydarts presets`)")
    return yaml.safe_load(resources.files("noisydarts.presets").joinpath(f"{name}.yaml").read_text()) or {}


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found: give the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
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
        name = cfg[section]["name"]
        for _, layer in layers:
            name = (layer.get(section) or {}).get("name", name) if isinstance(layer.get(section), dict) else name
        if name not in registry:
            raise UserError(f"unknown {section} {name!r}: choose from {', '.join(registry)}")
        cfg[section] = {"name": name, **copy.deepcopy(registry[name].DEFAULTS)}
    for origin, layer in layers:
        _merge(cfg, layer, origin, prefix="")
    validate(cfg)
    return cfg


def _merge(base: dict, layer: dict, origin: str, prefix: str) -> None:
    if not isinstance(layer, dict):
        raise UserError(f"{origin}: {prefix.rstrip('.') or 'the config'} must be a mapping")
    for key, value in layer.items():
        path = prefix + str(key)
        if key not in base:
            options = ", ".join(sorted(base))
            raise UserError(f"{origin}: unknown config key {path!r}; valid keys here: {options}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"{origin}: {path} is a section; set its keys, e.g. {path}.{next(iter(base[key]))}=...")
            _merge(base[key], value, origin, path + ".")
        else:
            base[key] = _coerce(path, base[key], value, origin)


def _coerce(path: str, default, value, origin: str):
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool):
        raise UserError(f"{origin}: {path} must be {kind.__name__}, got {value!r}")
    if not isinstance(value, kind):
        raise UserError(f"{origin}: {path} must be {kind.__name__}, got {value!r}")
    return value


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def validate(cfg: dict) -> None:
    """Range checks that types alone don't catch; each failure names the key and the fix."""
    _check(cfg["epochs"] >= 1, f"epochs must be at least 1, got {cfg['epochs']}")
    _check(cfg["batch_size"] >= 1, f"batch_size must be positive, got {cfg['batch_size']}")
    _check(0 <= cfg["warmup_epochs"], f"warmup_epochs must be >= 0, got {cfg['warmup_epochs']}")
    _check(0.0 < cfg["train_portion"] < 1.0, f"train_portion must be in (0, 1), got {cfg['train_portion']}")
    _check(cfg["amp"] in ("auto", "on", "off"), f"amp must be auto, on or off, got {cfg['amp']!r}")
    noise = cfg["noise"]
    _check(noise["lambda"] >= 0, f"noise.lambda must be >= 0 (it scales std(x)), got {noise['lambda']}")
    from .noise import DECAYS, DISTRIBUTIONS, MIXTURES, POSITIONS, SIGMAS

    _check(noise["distribution"] in DISTRIBUTIONS, f"noise.distribution must be one of {', '.join(DISTRIBUTIONS)}")
    _check(noise["mixture"] in MIXTURES, f"noise.mixture must be one of {', '.join(MIXTURES)}")
    _check(noise["decay"] in DECAYS, f"noise.decay must be one of {', '.join(DECAYS)}")
    _check(noise["sigma"] in SIGMAS, f"noise.sigma must be one of {', '.join(SIGMAS)}")
    _check(noise["position"] in POSITIONS, f"noise.position must be one of {', '.join(POSITIONS)}")
    _check(0.0 <= noise["skip_drop_path"] < 1.0,
           f"noise.skip_drop_path must be in [0, 1) (the release uses 0.3), got {noise['skip_drop_path']}")
    from .mixed import WEIGHTINGS

    _check(cfg["edge"]["weighting"] in WEIGHTINGS, f"edge.weighting must be one of {', '.join(WEIGHTINGS)}")
    _check(cfg["edge"]["partial_channels"] >= 1, "edge.partial_channels must be >= 1 (1 = all channels)")
    w = cfg["weights"]
    _check(w["lr"] > 0 and w["lr_min"] >= 0, "weights.lr must be > 0 and weights.lr_min >= 0")
    _check(w["grad_clip"] is None or w["grad_clip"] > 0, "weights.grad_clip must be > 0 (or null for none)")
    _check(cfg["arch"]["lr"] > 0, "arch.lr must be > 0")
    _check(len(cfg["arch"]["betas"]) == 2 and all(0 <= b < 1 for b in cfg["arch"]["betas"]),
           "arch.betas must be two numbers in [0, 1), e.g. [0.5, 0.999]")
    d = cfg["data"]
    _check(d["resolution"] >= 8, f"data.resolution must be at least 8, got {d['resolution']}")
    _check(d["limit"] is None or d["limit"] >= 2, "data.limit must be null or at least 2 images")
    _check(d["crop_padding"] >= 0 and d["cutout"] >= 0, "data.crop_padding and data.cutout must be >= 0")
    sections = _named_sections()
    for section in sections:
        module = sections[section][cfg[section]["name"]]
        if hasattr(module, "validate"):
            module.validate(cfg)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)

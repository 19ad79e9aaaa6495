"""The search config: the run-level keys the search loop reads, and the one place that assembles
the whole schema from the components that register their sections (data, methods, spaces,
distributed runs).

``noisydarts.resolve_config(preset, config_file, overrides)`` resolves a search config: every key
of every component is known and checked, and a method part a space cannot honour is refused.
"""

from __future__ import annotations

from pathlib import Path

from .. import config, data, methods, spaces  # noqa: F401  (importing them registers their sections)
from ..errors import UserError
from ..nn.compiling import MODES
from ..runtime import distributed  # noqa: F401  (registers the distributed section)

#: The run-level keys of a search.
RUN_DEFAULTS: dict = {
    "description": "",         # free text, kept in config.yaml and shown by compare
    "seed": 0,                 # every random draw of the run follows from it
    "device": "auto",          # auto | cpu | cuda | cuda:N
    "epochs": 50,              # passes over the search-train half
    "batch_size": 64,          # images per step (the global batch under torchrun)
    "warmup_epochs": 0,        # epochs with alpha frozen, only the weights train
    "train_portion": 0.5,      # search-train / search-val split of the training set
    "channels_last": True,     # NHWC memory layout (faster convolutions)
    "amp": "auto",             # auto (bf16 autocast on CUDA) | on | off
    "compile": "off",          # off | default | reduce-overhead | max-autotune: torch.compile of each mixed edge
}
#: The two optimizers of the bilevel step.
WEIGHTS_DEFAULTS: dict = {
    "lr": 0.025,               # SGD learning rate of the network weights, cosine-annealed
    "lr_min": 0.001,           # where the cosine schedule ends
    "momentum": 0.9,           # SGD momentum
    "weight_decay": 3e-4,      # L2 on the weights
    "grad_clip": 5.0,          # gradient-norm clipping of the weights (null = none)
}
ARCH_DEFAULTS: dict = {
    "lr": 3e-4,                # Adam learning rate of the architecture parameters
    "betas": [0.5, 0.999],     # Adam betas
    "weight_decay": 1e-3,      # L2 on the architecture parameters
}
#: What happens at the end, and the evaluation recipe of this search's architectures: `noisydarts
#: train RUN` layers ``train`` over the space's recipe (null = the space's value).
OUTPUT_DEFAULTS: dict = {
    "train": {
        "drop_path_prob": None,      # the evaluation network's drop-path (null = the space's recipe)
    },
    "plots": True,                   # plots/ and report.{md,html} at the end of a search
    "tensorboard": False,            # per-epoch scalars in RUN_DIR/tensorboard (needs tensorboard)
}

#: The order of config.yaml's top-level keys.
KEY_ORDER = (*RUN_DEFAULTS, "data", "space", "noise", "edge", "vdnas", "fairdarts", "drnas", "aux_skip", "zero_one",
             "beta_decay", "perturb", "weights", "arch", "estimator", "monitor", "early_stop", *OUTPUT_DEFAULTS,
             "distributed")


def validate_run(cfg: dict) -> None:
    """Range checks that types alone don't catch; each failure names the key and the fix."""
    check = config.check
    check(0 <= cfg["seed"] < 2**62, f"seed must be an integer in [0, 2^62), got {cfg['seed']}")
    check(cfg["epochs"] >= 1, f"epochs must be at least 1, got {cfg['epochs']}")
    check(cfg["batch_size"] >= 1, f"batch_size must be positive, got {cfg['batch_size']}")
    check(0 <= cfg["warmup_epochs"], f"warmup_epochs must be >= 0, got {cfg['warmup_epochs']}")
    # A preset's warm-up (PC-DARTS, SI-VDNAS: 15 of 50 epochs) outlives a shortened run: alpha would
    # never train and the "result" would be its random initialization.
    check(cfg["warmup_epochs"] < cfg["epochs"],
          f"warmup_epochs ({cfg['warmup_epochs']}) must be below epochs ({cfg['epochs']}): alpha is frozen for the "
          f"warm-up and would never train; shorten it, e.g. --set warmup_epochs={cfg['epochs'] * 3 // 10} "
          f"(30 %, the share of the PC-DARTS and SI-VDNAS recipes' 15 of 50 epochs)")
    check(0.0 < cfg["train_portion"] < 1.0, f"train_portion must be in (0, 1), got {cfg['train_portion']}")
    config.check_choice("amp", cfg["amp"], ("auto", "on", "off"))
    config.check_choice("compile", cfg["compile"], MODES)
    w = cfg["weights"]
    check(w["lr"] > 0 and w["lr_min"] >= 0, "weights.lr must be > 0 and weights.lr_min >= 0")
    check(w["grad_clip"] is None or w["grad_clip"] > 0, "weights.grad_clip must be > 0 (or null for none)")
    check(w["momentum"] >= 0 and w["weight_decay"] >= 0, "weights.momentum and weights.weight_decay must be >= 0")
    a = cfg["arch"]
    check(a["lr"] > 0, "arch.lr must be > 0")
    check(a["weight_decay"] >= 0, "arch.weight_decay must be >= 0")
    check(len(a["betas"]) == 2 and all(0 <= b < 1 for b in a["betas"]),
          "arch.betas must be two numbers in [0, 1), e.g. [0.5, 0.999]")


SCHEMA = config.SEARCH
SCHEMA.register("", RUN_DEFAULTS, validate=validate_run, on_off=("amp", "compile"), owner=__name__)
SCHEMA.register("weights", WEIGHTS_DEFAULTS, nullable={"grad_clip": float}, owner=__name__)
SCHEMA.register("arch", ARCH_DEFAULTS, owner=__name__)
SCHEMA.register("", OUTPUT_DEFAULTS, nullable={"train.drop_path_prob": float}, owner=__name__ + ".output")
SCHEMA.key_order = KEY_ORDER


def _network_is_training(origin: str, key: str) -> str:
    """``network.KEY`` in a search: the trained network's size, not the supernet's (``space.KEY``)."""
    registry = SCHEMA.named().get("space", {})
    mine = (f"space.{key}: write --set space.{key}=..." if any(key in s.DEFAULTS for s in registry.values())
            else "the space.* keys (see noisydarts search --print-config)")
    return (f"{origin}: network.{key} sizes the trained network (noisydarts train --set network.{key}=...); "
            f"the supernet this search trains is sized by {mine}")


# Search and training name the two networks apart: DARTS searches 16 channels, trains 36.
SCHEMA.register_foreign("network", _network_is_training)


def defaults() -> dict:
    """Every key of a search config with its default (the darts space and first-order estimator)."""
    return SCHEMA.defaults()


def resolve_config(preset: str | None = None, config_file: str | Path | dict | None = None,
                   overrides: list[str] | dict | None = None) -> dict:
    """A full search config: the defaults <- ``preset`` <- ``config_file`` (a YAML path or a dict)
    <- ``overrides`` (``["noise.lambda=0.1", ...]`` or a nested dict); every key and value checked.
    A data directory (and ``data.root``) is stored absolute: the run resumes from anywhere."""
    cfg = config.resolve(preset, config_file, overrides, schema=SCHEMA)
    config.absolute_data_paths(cfg["data"], data.DATASETS)
    return cfg


def validate(cfg: dict) -> None:
    """Check a resolved search config again (every section's validation)."""
    SCHEMA.validate(cfg)


__all__ = ["SCHEMA", "UserError", "defaults", "resolve_config", "validate"]

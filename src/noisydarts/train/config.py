"""The training configuration: :data:`DEFAULTS` and how a training run's config is resolved.

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
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .. import config
from ..config import _merge, parse_overrides
from ..runtime.distributed import DEFAULTS as DISTRIBUTED_DEFAULTS
from ..runtime.distributed import validate_section as validate_distributed
from ..data import DATA_DEFAULTS
from ..errors import UserError
from ..models import GENOTYPE_FILE
from ..spaces import space_of

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
             # the data path and its augmentation: the data package's keys and defaults
             **DATA_DEFAULTS},
    # data-parallel training under torchrun (noisydarts.runtime.distributed; no noise to share here)
    "distributed": {k: v for k, v in DISTRIBUTED_DEFAULTS.items() if k != "noise_std"},
}

#: Keys of a training config that may be null (a search config's are registered by their sections).
config.register_keys(nullable={"grad_clip": float, "network.se": float, "network.activation": str})



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

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

Names shared with the search config: the SGD of the network weights is the ``weights`` section
(``weights.lr``, ``weights.momentum``, ... as in a search, plus ``weights.lr_schedule`` and
``weights.nesterov``); the top-level names earlier versions used (``lr``, ``grad_clip``, ...)
are still read in every layer (:data:`ALIASES`). ``space.<key>`` is read as ``network.<key>``
for the space's network keys: a user coming from a search writes ``--set space.channels=36`` and
sizes the trained network (the canonical name stays ``network.*``: the search's ``space.*``
sizes its supernet, a different network). A data directory and ``data.root`` are stored absolute.

Model selection: by default the final weights are the result (``weights.pt``), as the papers
report them. ``selection: holdout`` holds ``data.holdout`` training images out of training and
keeps the epoch with the best accuracy on them as ``best.pt``; ``selection: test`` selects on the
test split (optimistic, since the test split then chooses the model: only for comparing with
papers that report the best test epoch).
"""

from __future__ import annotations

import copy
from pathlib import Path


from .. import config
from ..config import _merge, absolute_data_paths, apply_aliases, parse_overrides
from ..runtime.distributed import DEFAULTS as DISTRIBUTED_DEFAULTS
from ..runtime.distributed import validate_section as validate_distributed
from ..data import DATA_DEFAULTS, DATASETS
from ..errors import UserError
from ..models import GENOTYPE_FILE
from ..runtime.runs import peek_run_config, run_kind
from ..spaces import space_of

SELECTIONS = ("none", "holdout", "test")

DEFAULTS: dict = {
    "seed": 0,
    "device": "auto",
    "family": "cifar",           # the dataset family: picks the space's network and recipe
    "epochs": 600,
    "batch_size": 96,
    # SGD of the network weights (the same section a search config has, plus the schedule's shape)
    "weights": {
        "lr": 0.025,                 # SGD learning rate (old name: lr)
        "lr_schedule": "cosine",     # cosine (to 0) | linear (to 0) (old name: lr_schedule)
        "momentum": 0.9,             # SGD momentum (old name: momentum)
        "nesterov": False,           # Nesterov momentum (old name: nesterov)
        "weight_decay": 3e-4,        # L2 on the weights (old name: weight_decay)
        "grad_clip": 5.0,            # gradient-norm clipping, null = none (old name: grad_clip)
    },
    "label_smoothing": 0.0,
    "auxiliary_weight": 0.4,     # loss weight of the auxiliary head, when the network has one
    "drop_path_prob": 0.2,       # reached at the last epoch, linearly from 0
    "selection": "none",         # none | holdout | test: which epoch best.pt keeps (see above)
    "channels_last": True,
    "amp": "auto",
    "plots": True,               # plots/ and report.{md,html} at the end of the run (noisydarts.train.callbacks)
    "tensorboard": False,        # per-epoch scalars in RUN_DIR/tensorboard (needs tensorboard)
    "network": {},               # the space's network keys (from Space.network_defaults)
    "data": {"name": "cifar10", "root": None, "resolution": 32, "limit": None, "holdout": 0,
             "crop_padding": 4, "flip": True, "cutout": 16,
             # the data path and its augmentation: the data package's keys and defaults
             **DATA_DEFAULTS},
    # data-parallel training under torchrun (noisydarts.runtime.distributed; no noise to share here)
    "distributed": {k: v for k, v in DISTRIBUTED_DEFAULTS.items() if k != "noise_std"},
}

#: Keys of a training config that may be null (a search config's are registered by their sections).
config.register_keys(nullable={"weights.grad_clip": float, "network.se": float, "network.activation": str})

#: The names earlier versions gave the optimizer keys (top level), still read in every layer: a
#: space's recipe, a search run's train section, a YAML file, --set, an old run's config.yaml.
ALIASES = {key: f"weights.{key}" for key in DEFAULTS["weights"]}



def search_run_dir(arch) -> Path | None:
    """The search run directory ``arch`` names (the directory, or its genotype.json), else None."""
    if not isinstance(arch, (str, Path)):
        return None
    path = Path(arch).expanduser()
    run = path if path.is_dir() else path.parent if path.name == GENOTYPE_FILE else None
    return run if run is not None and run_kind(run) == "search" else None


def search_run_config(arch) -> dict:
    """The config.yaml of the search run ``arch`` names, as written ({} when ``arch`` names none)."""
    run = search_run_dir(arch)
    return (peek_run_config(run) or {}) if run is not None else {}


def search_recipe(arch) -> dict:
    """The evaluation settings a search carries for its architectures: the non-null entries of
    the ``train`` section of the search run's config.yaml when ``arch`` is a search run directory
    (or its genotype.json), e.g. PC-DARTS' drop-path 0.3; else nothing."""
    section = search_run_config(arch).get("train")
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
    space = space_of(arch) if arch is not None else get_space("darts")
    family = DEFAULTS["family"]
    for _, layer in layers:
        if isinstance(layer, dict):
            family = layer.get("family", family)
    if family is None or family == "":
        raise UserError(f"family needs a value: one of {', '.join(space.families)}")
    if not isinstance(family, str):
        raise UserError(f"family must be str (one of {', '.join(space.families)}), got {family!r}")
    space.check_family(family)
    cfg = copy.deepcopy(DEFAULTS)
    cfg["network"] = space.network_defaults(family)
    # A user coming from a search sizes the network as there (space.channels): the same key here.
    aliases = {**ALIASES, **{f"space.{key}": f"network.{key}" for key in cfg["network"]}}
    for origin, layer in [(f"the {space.name} space's {family} recipe", space.recipe(family)), *layers]:
        layer = apply_aliases(layer, aliases, origin)
        if isinstance(layer, dict) and isinstance(layer.get("space"), dict) and layer["space"]:
            key = next(iter(layer["space"]))
            raise UserError(f"{origin}: space.{key} is a search key; the trained network's size is network.* "
                            f"({', '.join(cfg['network'])} for the {space.name} space)")
        _merge(cfg, layer, origin, "")
    validate(cfg)
    space.validate_network(cfg["network"], family)
    absolute_data_paths(cfg["data"], DATASETS)
    return cfg


def validate(cfg: dict) -> None:
    checks = [
        (0 <= cfg["seed"] < 2**62, f"seed must be an integer in [0, 2^62), got {cfg['seed']}"),
        (cfg["epochs"] >= 1, "epochs must be at least 1"),
        (cfg["batch_size"] >= 1, "batch_size must be at least 1"),
        (0.0 <= cfg["drop_path_prob"] < 1.0, "drop_path_prob must be in [0, 1)"),
        (cfg["auxiliary_weight"] >= 0, "auxiliary_weight must be >= 0"),
        (cfg["weights"]["lr"] > 0, "weights.lr must be > 0"),
        (cfg["weights"]["lr_schedule"] in ("cosine", "linear"), "weights.lr_schedule must be cosine or linear"),
        (cfg["weights"]["grad_clip"] is None or cfg["weights"]["grad_clip"] > 0, "weights.grad_clip must be > 0 or null"),
        (cfg["weights"]["momentum"] >= 0 and cfg["weights"]["weight_decay"] >= 0,
         "weights.momentum and weights.weight_decay must be >= 0"),
        (cfg["amp"] in ("auto", "on", "off"), "amp must be auto, on or off"),
        (isinstance(cfg["plots"], bool), "plots must be true or false"),
        (isinstance(cfg["tensorboard"], bool), "tensorboard must be true or false"),
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

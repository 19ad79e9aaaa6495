"""Architectures as users name them, and the networks built from them.

Every command that takes an architecture (``train``, ``info``, ``nb201 lookup``, ...) resolves it
here, through the space registry, from any of:

* a zoo name (``noisydarts_a``, see :mod:`noisydarts.models.zoo`);
* a search or training run directory (its ``genotype.json``);
* a genotype.json file, or a text file holding a genotype;
* genotype text in any space's format (``Genotype(...)``, an NB201 string ``|op~0|+...``, ...);
* a genotype object.

:func:`create_model` is the factory (in the spirit of ``timm.create_model``)::

    import noisydarts
    net = noisydarts.create_model("noisydarts_a", dataset="cifar10")        # DARTS CIFAR network, 3.26 M
    net = noisydarts.create_model("|nor_conv_3x3~0|+...", dataset="cifar100")  # the NB201 benchmark network
    print(noisydarts.info("runs/my-search"))                               # {"params_m": ..., "multadds_m": ...}
    print(noisydarts.info("runs/my-training"))                             # the network it trained
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ARCH_FORMS, UserError
from ..errors import path_kind, read_text
from ..runtime.runs import peek_run_config, run_kind
from ..spaces import claim_genotype, dataset_spec, genotype_from_payload, space_of

GENOTYPE_FILE = "genotype.json"


_WHAT = "a genotype.json written by noisydarts, a run directory, or a text file holding a genotype"


def read_genotype_file(path: Path):
    """The genotype in a genotype.json (any space) or in a text file holding its text form."""
    text = read_text(path, _WHAT)
    if text.lstrip().startswith("{"):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"malformed genotype file {path}: {e.msg} at line {e.lineno}") from e
        except RecursionError as e:
            raise UserError(f"malformed genotype file {path}: nested too deeply") from e
        return genotype_from_payload(payload, str(path))
    genotype = claim_genotype(text.strip())
    if genotype is None:
        raise UserError(f"{path} holds no genotype (neither a genotype.json nor the text form of any space): give {_WHAT}")
    return genotype


def resolve_genotype(source):
    """The genotype ``source`` names (see the module docstring for the forms)."""
    from . import zoo

    try:
        space_of(source)
        return source  # already a genotype of a registered space
    except UserError:
        pass
    text = str(source).strip()
    if not text:  # not the path "." (the working directory), which an empty string would name
        raise UserError(f"the architecture is {'empty' if not str(source) else 'blank'}: give {ARCH_FORMS}")
    if zoo.canonical(text) in zoo.ZOO:  # old names (noisydarts_A) too
        return zoo.get(zoo.canonical(text))
    path = Path(text).expanduser()
    kind = path_kind(path)
    if kind == "dir":
        file = path / GENOTYPE_FILE
        if path_kind(file) != "file":
            raise UserError(f"{path} has no {GENOTYPE_FILE}: give a finished search or training run directory "
                            "(an interrupted search can be finished with `noisydarts search --resume`)")
        return read_genotype_file(file)
    if kind == "file":
        return read_genotype_file(path)
    genotype = claim_genotype(text) if text else None
    if genotype is None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UserError(f"architecture {shown!r} not found: give {ARCH_FORMS}; the zoo has {', '.join(zoo.ZOO)}")
    return genotype


def training_run(source) -> Path | None:
    """The training run directory ``source`` names, else None."""
    if not isinstance(source, (str, Path)):
        return None
    path = Path(str(source).strip()).expanduser()
    return path if run_kind(path) == "train" else None


def create_model(arch, dataset: str = "cifar10", *, num_classes: int | None = None, family: str | None = None,
                 in_channels: int = 3, **network):
    """The evaluation network of ``arch`` for ``dataset`` (cifar10, cifar100, imagenet,
    imagenet16-120), freshly initialized, with its space's default size for that dataset family
    unless ``network`` keys (e.g. ``channels=16, layers=8``) say otherwise. ``family`` overrides the
    dataset's family; ``num_classes`` its number of classes. A training run is refused: its
    trained network is :func:`noisydarts.load_model`'s."""
    run = training_run(arch)
    if run is not None:
        raise UserError(f"{arch} is a training run, and create_model builds a fresh, untrained network: use "
                        f"noisydarts.load_model({str(arch)!r}) for the trained one (or create_model on "
                        f"{run / GENOTYPE_FILE} for a fresh network of its architecture)")
    genotype = resolve_genotype(arch)
    classes, dataset_family = dataset_spec(dataset)
    return space_of(genotype).build_network(genotype, family or dataset_family, num_classes or classes, network,
                                            in_channels)


def info(arch, dataset: str | None = None) -> dict:
    """``{"params_m", "multadds_m"}`` of the evaluation network of ``arch``, as the papers count
    them (parameters without auxiliary heads; mult-adds of one image).

    ``dataset`` (cifar10, cifar100, imagenet, imagenet16-120) picks the network family, its size
    and resolution, and the number of classes. Without it: a training run is sized as it was
    trained (its family, network keys, classes and resolution: ``"trained"`` is then added,
    describing them); any other architecture on its space's usual dataset (``cifar10``; the
    MobileNetV2 space: ``imagenet``)."""
    run = training_run(arch) if dataset is None else None
    if run is not None:
        return trained_info(run)
    genotype = resolve_genotype(arch)
    return space_of(genotype).info(genotype, dataset)


def trained_info(run: Path) -> dict:
    """Sizes of the network a training run trains: its config's family and network keys, and the
    classes, resolution and channels of its data (``data.json``; else its weights file)."""
    from ..data.record import read_data_record

    cfg = peek_run_config(run) or {}
    genotype = resolve_genotype(run)
    record = read_data_record(run)
    if record is None:
        record = _record_from_weights(run)
    family, network = cfg.get("family", "cifar"), cfg.get("network") or {}
    resolution = int(record.get("resolution") or (cfg.get("data") or {}).get("resolution", 32))
    num_classes, channels = len(record["classes"]), int(record.get("channels", 3))
    sizes = space_of(genotype).measure(genotype, family, num_classes, network, resolution, channels)
    return {**sizes, "trained": {"family": family, "network": network, "num_classes": num_classes,
                                 "resolution": resolution, "data": record.get("name")}}


def _record_from_weights(run: Path) -> dict:
    """What a run from before data.json records in its weights file (weights.pt, else best.pt)."""
    from ..runtime.runs import load_torch_file

    for name in ("weights.pt", "best.pt"):
        if path_kind(run / name) == "file":
            payload = load_torch_file(run / name, "noisydarts weights file", {"num_classes": int})
            return {"classes": [str(i) for i in range(payload["num_classes"])], "name": payload.get("data"),
                    "resolution": payload.get("resolution")}
    raise UserError(f"{run} is a training run that stopped before its first epoch ended: it records no data yet "
                    "to size its network by; give --data to size the architecture for a dataset")

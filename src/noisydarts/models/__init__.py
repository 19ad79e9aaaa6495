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
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ARCH_FORMS, UserError
from ..errors import path_kind, read_text
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
    if text in zoo.ZOO:
        return zoo.get(text)
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


def create_model(arch, dataset: str = "cifar10", *, num_classes: int | None = None, family: str | None = None,
                 in_channels: int = 3, **network):
    """The evaluation network of ``arch`` for ``dataset`` (cifar10, cifar100, imagenet,
    imagenet16-120), with its space's default size for that dataset family unless ``network``
    keys (e.g. ``channels=16, layers=8``) say otherwise. ``family`` overrides the dataset's family;
    ``num_classes`` its number of classes."""
    genotype = resolve_genotype(arch)
    classes, dataset_family = dataset_spec(dataset)
    return space_of(genotype).build_network(genotype, family or dataset_family, num_classes or classes, network,
                                            in_channels)


def info(arch, dataset: str = "cifar10") -> dict:
    """``{"params_m", "multadds_m"}`` of the evaluation network of ``arch`` on ``dataset``, as the
    papers count them (parameters without auxiliary heads; mult-adds of one image at the
    family's resolution)."""
    genotype = resolve_genotype(arch)
    return space_of(genotype).info(genotype, dataset)

"""Published genotypes, by name, with the figures their papers report.

The asset ``assets/genotypes.json`` is the team's data file (``shared/data/genotypes.json``):
NoisyDARTS a-j from the NoisyDARTS reference release, DARTS V1/V2 from the DARTS release and
PC-DARTS from its release, plus NoisyDARTS-A of the MobileNetV2 space (``noisydarts_mbv2_a``
with SE and Swish, ``noisydarts_mbv2_a_plain`` without, ``"space": "mbv2"``); each entry keeps
its ``source``, the ``search`` setting that found it and the ``published`` CIFAR-10 figures
(params in M, mult-adds in M where published, top-1 in %).

Names: no two differ only by case (the MobileNetV2 entries were ``noisydarts_A`` and
``noisydarts_A_plain``, a capital letter away from the DARTS cell ``noisydarts_a``). The old
names are still found (:data:`OLD_NAMES`): :data:`ZOO` lists the names in use, and
:func:`canonical`, :func:`get` and :func:`entry` accept an old one too, so every command that
takes an architecture does.

Two published parameter counts do not match their genotype, and the zoo says so
(:data:`PARAMS_NOTES`): ``noisydarts_h`` is listed as 3.01 M but its genotype gives 3.10 M
(a typo in the release's table: 3.10 is also consistent with its 511 M mult-adds), and DARTS
reports 3.3 M for its first-order cell, whose released genotype gives 3.17 M.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import UserError, suggest

#: name -> (the parameter count the genotype actually gives, why the published one differs)
PARAMS_NOTES = {
    "noisydarts_h": (3.10, "published 3.01 M is a typo: the genotype gives 3.10 M"),
    "darts_v1": (3.17, "the DARTS paper reports 3.3 M; the released DARTS_V1 genotype gives 3.17 M"),
}


@lru_cache(maxsize=1)
def _entries() -> dict:
    return json.loads(resources.files("noisydarts.assets").joinpath("genotypes.json").read_text())


#: Names earlier versions used -> the entry's name now.
OLD_NAMES = {"noisydarts_A": "noisydarts_mbv2_a", "noisydarts_A_plain": "noisydarts_mbv2_a_plain"}


#: The zoo's names, in the order of the asset (the names in use; see :func:`canonical`).
ZOO: tuple[str, ...] = tuple(_entries())


def canonical(name: str) -> str:
    """The name in use for ``name`` (itself, or the entry an old name stands for)."""
    return OLD_NAMES.get(name, name)


def get(name: str):
    """The genotype called ``name`` (see :data:`ZOO`); an entry names its space (default darts)."""
    from ..spaces import genotype_from_payload

    e = entry(name)
    return genotype_from_payload({"space": e.get("space", "darts"), "genotype": e["genotype"]}, f"zoo entry {name}")


def entry(name: str) -> dict:
    """The whole record: ``genotype``, ``search``, ``published`` ({cifar10_params_m,
    cifar10_multadds_m?, cifar10_top1}) and ``source``."""
    name = canonical(name)
    if name not in _entries():
        raise UserError(f"unknown zoo genotype {name!r}{suggest(name, ZOO)}: choose from {', '.join(ZOO)} "
                        "(see `noisydarts zoo`)")
    return _entries()[name]


def published(name: str) -> dict:
    return dict(entry(name)["published"])


def table(dataset: str = "cifar10") -> list[dict]:
    """One row per zoo genotype: published params / mult-adds / top-1 and the computed params
    and mult-adds of its evaluation network (see :func:`noisydarts.models.info`).

    Counting every network takes seconds each, so the computed figures are cached in
    :func:`cache_dir` under a key made of everything they depend on (the genotypes, the code
    that builds and counts the networks, the torch version); an unwritable cache only costs time."""
    figures = _cached_figures(dataset)
    rows = []
    for name in ZOO:
        pub = published(name)
        rows.append({"name": name, "published_params_m": pub.get("cifar10_params_m"),
                     "published_multadds_m": pub.get("cifar10_multadds_m"), "published_top1": pub.get("cifar10_top1"),
                     **figures[name], "search": entry(name).get("search", "")})
    return rows


def cache_dir() -> Path:
    """``$NOISYDARTS_CACHE``, else ``$XDG_CACHE_HOME/noisydarts``, else ``~/.cache/noisydarts``."""
    if os.environ.get("NOISYDARTS_CACHE"):
        return Path(os.environ["NOISYDARTS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "noisydarts"


def _cache_key(dataset: str) -> str:
    import torch

    h = hashlib.sha256(f"{dataset} {torch.__version__}".encode())
    # The genotypes and every module that can change how a network is built or counted.
    root = Path(__file__).resolve().parents[1]  # the package: its code and the asset decide the sizes
    parts = [root / "assets" / "genotypes.json", *sorted(root.rglob("*.py"))]
    for part in parts:
        try:
            h.update(part.read_bytes())
        except OSError:
            h.update(str(part).encode())
    return h.hexdigest()[:20]


def size(genotype, dataset: str) -> dict:
    """``{"params_m", "multadds_m"}`` of a genotype's evaluation network (its space's ``info``)."""
    from ..spaces import space_of

    return space_of(genotype).info(genotype, dataset)


def _cached_figures(dataset: str) -> dict[str, dict]:
    path = cache_dir() / f"zoo-{dataset}-{_cache_key(dataset)}.json"
    try:
        figures = json.loads(path.read_text())
        if isinstance(figures, dict) and set(figures) == set(ZOO):
            return figures
    except (OSError, ValueError):
        pass
    figures = {name: size(get(name), dataset) for name in ZOO}
    try:
        from ..runtime.runs import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(figures))
    except (OSError, UserError):
        pass  # a read-only home: the table is right, only slower next time
    return figures

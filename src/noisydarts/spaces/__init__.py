"""Search spaces, by name: the one registry every command goes through.

A space is a :class:`~noisydarts.spaces.base.Space` object that owns everything about it (config
keys, supernet, genotype types, derivation, evaluation networks, training recipes, sizing,
drawing); this module maps names to spaces and genotypes to their space::

    space = get_space("nb201")                  # or get_space(cfg) for a resolved search config
    model = space.build_supernet(cfg, num_classes=10)
    genotype = parse_genotype("|skip_connect~0|+...")   # text in any space's format
    space_of(genotype).build_network(genotype, "cifar", 10)

A new space registers itself with :func:`register_space` (see the README, "Adding a search space").
"""

from __future__ import annotations

from .. import config
from ..errors import UserError
from ..methods.parts import check_support
from .base import DATASETS, FAMILIES, CellGraph, Space, count_multadds, count_params, dataset_spec

SPACES: dict[str, Space] = {}


def register_space(space: Space) -> Space:
    """Add ``space`` to the registry under ``space.name``; returns it (usable as a decorator on an instance)."""
    if not space.name or space.name in SPACES:
        raise ValueError(f"a space needs a new, non-empty name; {space.name!r} is taken or empty")
    SPACES[space.name] = space
    return space


def get_space(name_or_cfg) -> Space:
    """The space called ``name``, or the one a resolved search config names (``cfg["space"]["name"]``)."""
    name = name_or_cfg["space"]["name"] if isinstance(name_or_cfg, dict) else name_or_cfg
    if name not in SPACES:
        raise UserError(f"unknown space {name!r}: choose from {', '.join(SPACES)}")
    return SPACES[name]


def space_of(genotype) -> Space:
    """The space a genotype belongs to."""
    for space in SPACES.values():
        if space.owns(genotype):
            return space
    raise UserError(f"{type(genotype).__name__} is not a genotype of any search space ({', '.join(SPACES)})")


def claim_genotype(text: str):
    """The genotype ``text`` writes in some space's text form, or None if no space claims it
    (text a space claims but finds malformed raises that space's UserError)."""
    for space in SPACES.values():
        genotype = space.parse(str(text))
        if genotype is not None:
            return genotype
    return None


def parse_genotype(text: str):
    """A genotype from its text form in any space's format (DARTS ``Genotype(...)``, an NB201 arch
    string ``|op~0|+...``, ``CellwiseGenotype(...)``, ...)."""
    text = str(text)
    genotype = claim_genotype(text)
    if genotype is not None:
        return genotype
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise UserError(f"{shown!r} is not a genotype in any space's text form "
                    "(Genotype(...), an NB201 string |op~0|+..., CellwiseGenotype(...), LayerwiseGenotype(...), ...)")


def genotype_payload(genotype) -> dict:
    """What genotype.json stores: the space, the genotype type, its JSON form and its text."""
    space = space_of(genotype)
    return {"space": space.name, "type": type(genotype).__name__, "genotype": space.to_json(genotype),
            "text": str(genotype)}


def genotype_from_payload(payload, where: str = "genotype.json"):
    """Inverse of :func:`genotype_payload` (a file without ``"space"`` is a DARTS genotype)."""
    if not isinstance(payload, dict):
        raise UserError(f"{where} must hold a JSON object with the keys space and genotype")
    if "genotype" not in payload:  # a bare DARTS genotype dict, as older files and the zoo store it
        return get_space("darts").from_json(payload)
    space = get_space(payload.get("space", "darts"))
    return space.from_json(payload["genotype"], payload.get("type"))


def build_supernet(cfg: dict, num_classes: int, in_channels: int = 3):
    """The supernet of a resolved search config (``get_space(cfg).build_supernet``)."""
    return get_space(cfg).build_supernet(cfg, num_classes, in_channels)


from . import amended, darts, mbv2, nb201  # noqa: E402  (each module defines its SPACE)

for _module in (darts, nb201, amended, mbv2):
    register_space(_module.SPACE)

# ``space.name`` picks a space from the registry (spaces registered later are found too).
config.SEARCH.register_named("space", SPACES, default="darts", owner=__name__)
config.register_keys(auto_or_bool=("space.checkpoint",), nullable={"space.op_set": str})
# A method part the chosen space cannot honour is refused with the config, before anything runs.
config.SEARCH.register_check("space supports the method", lambda cfg: check_support(get_space(cfg), cfg),
                             owner=__name__)

__all__ = ["DATASETS", "FAMILIES", "SPACES", "CellGraph", "Space", "build_supernet", "count_multadds", "count_params",
           "claim_genotype", "dataset_spec", "genotype_from_payload", "genotype_payload", "get_space", "parse_genotype",
           "register_space", "space_of"]

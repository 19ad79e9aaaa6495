"""Search spaces, by name.

Each space module provides ``DEFAULTS`` (its ``space.*`` config keys) and
``build(cfg, num_classes, in_channels) -> Supernet``. The search loop only sees the
:class:`~noisydarts.supernet.Supernet` interface, so a new space plugs in by adding it here.
"""

from __future__ import annotations

from types import ModuleType

from . import amended, darts, nb201

SPACES: dict[str, ModuleType] = {"darts": darts, "nb201": nb201, "amended": amended}


def build_supernet(cfg: dict, num_classes: int, in_channels: int = 3):
    return SPACES[cfg["space"]["name"]].build(cfg, num_classes, in_channels)

"""What a method hands a space's supernet, built from a resolved search config in one place.

A space never reads the method's config sections (``edge``, ``noise``, ``vdnas``): its
supernet gets a :class:`MethodParts` from :func:`build_parts` (``Space.build_supernet`` does
that, see :mod:`noisydarts.spaces.base`), and the space declares in :class:`Support` which parts
it can honour. :func:`check_support` refuses, in one line naming the space and the key, a
configuration a space would otherwise silently drop.

* **weighting** (``edge.weighting``): a factory ``factory(arch, kinds, edge_targets) -> Weighting``
  with its options bound (SI-VDNAS' ``vdnas.*``), from
  :func:`noisydarts.methods.weightings.weighting_factory`; the name is ``weighting_name``.
* **skip_transform** (``noise.*``): the NoisyDARTS noise and/or the release's drop-path on every
  ``skip_connect`` (:func:`noisydarts.methods.noise.build_skip_transform`), or None;
  ``skip_transform_on_reduction`` (``noise.reduction_skips``) says whether stride-2 skips get it.
* **partial_channels** (``edge.partial_channels``): PC-DARTS' K (1: all channels).
* **regularizers**: architecture-loss terms (:mod:`noisydarts.methods.regularizers`) the supernet
  sums in ``arch_regularizer()``: those the weighting brings along (SI-VDNAS' KL) and any added
  by hand.
* **auxiliary_skip** (``aux_skip.*``): DARTS-' auxiliary skip on every mixed edge
  (:class:`noisydarts.methods.dartsminus.AuxiliarySkip`), or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from .. import config
from ..errors import UserError
from .dartsminus import build_auxiliary_skip
from .noise import SkipTransforms, build_skip_transform
from .regularizers import Regularizer, regularizers_from_config
from .weightings import WEIGHTINGS, weighting_factory

#: What each weighting is called in messages.
WEIGHTING_TITLES = {"softmax": "DARTS softmax", "edge_norm": "PC-DARTS edge normalization", "si_vdnas": "SI-VDNAS",
                    "sigmoid": "FairDARTS sigmoid", "dirichlet": "DrNAS Dirichlet"}


@dataclass
class MethodParts:
    """The method's parts for one supernet (see the module docstring)."""

    weighting: Callable
    weighting_name: str = "softmax"
    skip_transform: nn.Module | None = None
    skip_transform_on_reduction: bool = True
    partial_channels: int = 1
    regularizers: list[Regularizer] = field(default_factory=list)
    #: DARTS-' auxiliary skip (:class:`~.dartsminus.AuxiliarySkip`: β, its schedule, ``make_op(C, stride)``) or None
    auxiliary_skip: nn.Module | None = None
    _drop_path_only: nn.Module | None = field(default=None, repr=False, compare=False)

    def op_transforms(self, stride: int = 1) -> dict[str, nn.Module] | None:
        """The op transforms of a mixed edge of this stride: ``{"skip_connect": transform}`` or
        None. ``noise.reduction_skips: false`` keeps the noise off the stride-2 skips, not the
        release's drop-path (which the release applies to every skip branch): a stride-2 edge
        then gets the drop-path alone (the same module), or nothing."""
        transform = self.skip_transform
        if stride != 1 and not self.skip_transform_on_reduction:
            drop_path = getattr(transform, "drop_path", None)
            if drop_path is None:
                return None
            if self._drop_path_only is None:  # one module for every stride-2 edge
                self._drop_path_only = SkipTransforms(None, drop_path)
            transform = self._drop_path_only
        return None if transform is None else {"skip_connect": transform}


@dataclass(frozen=True)
class Support:
    """What a space's supernet can honour (``Space.supports``); :func:`check_support` refuses the rest.

    ``weightings``: the ``edge.weighting`` names it takes (None: every registered one, also those
    registered after the space); ``partial_channels``: whether its edges
    take PC-DARTS' K > 1; ``skip_transform``: whether it puts the NoisyDARTS noise
    (``noise.enabled``) on its skip ops; ``skip_drop_path``: whether it puts the release's
    drop-path (``noise.skip_drop_path > 0``) there; ``auxiliary_skip``: whether its mixed edges
    take DARTS-' auxiliary skip (``aux_skip.enabled``; refused unless a space declares it);
    ``weighting_derivation``: whether it derives the cell the weighting selects
    (``Weighting.keep_masks``: FairDARTS' threshold, SI-VDNAS' sample), so that the keys choosing
    that selection (``Weighting.derivation_keys``) mean something there (refused unless declared)."""

    weightings: tuple[str, ...] | None = None
    partial_channels: bool = True
    skip_transform: bool = True
    skip_drop_path: bool = True
    auxiliary_skip: bool = False
    weighting_derivation: bool = False


def build_parts(cfg: dict) -> MethodParts:
    """The method's parts of a resolved search config (sections ``edge``, ``noise``, ``vdnas``)."""
    name = cfg["edge"]["weighting"]
    cls = WEIGHTINGS[name]
    regularizers = list(cls.regularizers_from_config(cfg)) if hasattr(cls, "regularizers_from_config") else []
    regularizers += regularizers_from_config(cfg)  # those switched on by keys of their own (any weighting)
    return MethodParts(weighting=weighting_factory(cfg), weighting_name=name,
                       skip_transform=build_skip_transform(cfg["noise"]),
                       skip_transform_on_reduction=bool(cfg["noise"]["reduction_skips"]),
                       partial_channels=int(cfg["edge"]["partial_channels"]), regularizers=regularizers,
                       auxiliary_skip=build_auxiliary_skip(cfg))


def check_support(space, cfg: dict) -> None:
    """Refuse (UserError, one line naming the space and the key) a resolved search config whose
    method parts ``space`` cannot honour (``space.supports``, a :class:`Support`; and the space's
    own ``partial_channels_problem(space_cfg, k)``, e.g. K must divide the channels). Pure."""
    support: Support = getattr(space, "supports", None) or Support()
    name, edge, noise = space.name, cfg["edge"], cfg["noise"]
    weighting, k, p = edge["weighting"], edge["partial_channels"], noise.get("skip_drop_path", 0.0)

    def refuse(key: str, value, what: str, fix: str):
        raise UserError(f"the {name} space cannot use {key}={value} ({what}): {fix}")

    if support.weightings is not None and weighting not in support.weightings:
        refuse("edge.weighting", weighting, WEIGHTING_TITLES.get(weighting, "this weighting"),
               f"choose edge.weighting from {', '.join(support.weightings)}")
    if k != 1:
        if not support.partial_channels:
            refuse("edge.partial_channels", k, "PC-DARTS partial channels", "set edge.partial_channels=1")
        problem = space.partial_channels_problem(cfg["space"], k) if hasattr(space, "partial_channels_problem") else None
        if problem:
            refuse("edge.partial_channels", k, "PC-DARTS partial channels", problem)
    if noise["enabled"] and not support.skip_transform:
        refuse("noise.enabled", "true", "NoisyDARTS skip noise", "set noise.enabled=false")
    if p and not support.skip_drop_path:
        refuse("noise.skip_drop_path", p, "the NoisyDARTS release's skip drop-path", "set noise.skip_drop_path=0")
    problem = space.skip_op_problem(cfg["space"]) if (noise["enabled"] or p) and hasattr(space, "skip_op_problem") else None
    if problem:  # the skip transforms act on the skip op by name: an op set without it would leave them idle
        key, value, what = (("noise.enabled", "true", "NoisyDARTS skip noise") if noise["enabled"] else
                            ("noise.skip_drop_path", p, "the NoisyDARTS release's skip drop-path"))
        refuse(key, value, what, f"{problem}; set {key}={'false' if noise['enabled'] else 0} or choose another op set")
    if cfg.get("aux_skip", {}).get("enabled") and not support.auxiliary_skip:
        refuse("aux_skip.enabled", "true", "the DARTS- auxiliary skip", "set aux_skip.enabled=false")
    if not support.weighting_derivation and weighting in WEIGHTINGS:
        defaults = config.SEARCH.defaults()
        for key in getattr(WEIGHTINGS[weighting], "derivation_keys", ()):
            value, default = _lookup(cfg, key), _lookup(defaults, key)
            if value != default:
                refuse(key, value, f"the {WEIGHTING_TITLES.get(weighting, weighting)} derivation",
                       f"this space derives its cells by its own rule; drop the key (default {default})")


def _lookup(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg.get(part, {}) if isinstance(cfg, dict) else {}
    return cfg

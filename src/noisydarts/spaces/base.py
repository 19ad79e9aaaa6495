"""The Space interface: everything about one search space, behind one object.

A space owns, end to end:

* **search**: its ``space.*`` config keys (:attr:`Space.DEFAULTS`, :meth:`Space.validate`), the
  method parts it honours (:attr:`Space.supports`) and its supernet (:meth:`Space.make_supernet`
  from the method's :class:`~noisydarts.methods.parts.MethodParts`, whose ``genotype()`` is the
  derivation);
* **genotypes**: the types its searches and zoo entries produce (:attr:`Space.genotype_types`),
  their text form (:meth:`Space.parse`), their JSON form (:meth:`Space.to_json` /
  :meth:`Space.from_json`) and the numbers logged about them every epoch
  (:meth:`Space.genotype_metrics`);
* **evaluation**: the stand-alone network of a genotype for each dataset family it supports
  (:meth:`Space.build_network`), that network's default size (:meth:`Space.network_defaults`) and
  training recipe (:meth:`Space.recipe`), and its size as the papers report it (:meth:`Space.info`);
* **pictures**: edge names of its α rows and its cells as graphs (:meth:`Space.edge_labels`,
  :meth:`Space.cell_graphs`).

Commands reach all of it through the registry in :mod:`noisydarts.spaces`; nothing outside a
space module asks which space or genotype type it holds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import UserError
from ..methods.parts import MethodParts, Support, build_parts, check_support

#: Dataset families: the evaluation networks and training recipes are defined per family.
#: family -> input resolution of its networks (what ``info`` counts mult-adds at).
FAMILIES: dict[str, int] = {"cifar": 32, "imagenet": 224, "imagenet16": 16}

#: Datasets ``info`` and :func:`noisydarts.create_model` know by name: (classes, family).
DATASETS: dict[str, tuple[int, str]] = {
    "cifar10": (10, "cifar"),
    "cifar100": (100, "cifar"),
    "imagenet": (1000, "imagenet"),
    "imagenet16-120": (120, "imagenet16"),
}


def dataset_spec(dataset: str) -> tuple[int, str]:
    """``(num_classes, family)`` of a dataset name (see :data:`DATASETS`)."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r} for the network size: choose from {', '.join(DATASETS)}")
    return DATASETS[dataset]


# --- what info counts ----------------------------------------------------------------------------

def count_params(model: nn.Module) -> float:
    """Parameters in millions, excluding auxiliary heads (as the papers report them)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e6


@torch.no_grad()
def count_multadds(model: nn.Module, input_size=(1, 3, 32, 32)) -> float:
    """Multiply-adds in millions of one forward pass in eval mode, per image of ``input_size``.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix
    products only (FLOPs / 2); BatchNorm, activations, pooling and additions are not counted.
    A model on the ``meta`` device is counted without computing anything.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(*input_size, device=next(model.parameters()).device)
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / input_size[0] / 1e6


# --- cells as graphs (drawn by noisydarts.viz.plots) -----------------------------------------------------

@dataclass
class CellGraph:
    """A cell as a picture: named nodes at positions, and edges ``(source, target, op)``.

    ``op`` None is an unlabelled connection (e.g. into the output concat); ``bend`` optionally
    fixes an edge's curvature (matplotlib ``arc3`` rad) by ``(source, target)``; edges without one
    are bent automatically. Several edges between the same two nodes (several ops on one edge)
    are fanned out by the drawing."""

    title: str
    positions: dict[str, tuple[float, float]]
    edges: list[tuple[str, str, str | None]]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    bend: dict[tuple[str, str], float] = field(default_factory=dict)


# --- the interface -------------------------------------------------------------------------------------

class Space:
    """One search space. Subclasses implement every method that raises NotImplementedError."""

    #: registry name (``space.name`` in configs, ``"space"`` in genotype.json)
    name: str = ""
    #: one line for listings
    description: str = ""
    #: the ``space.*`` search config keys and their defaults
    DEFAULTS: dict = {}
    #: the genotype classes this space produces and reads (the first is its usual one)
    genotype_types: tuple[type, ...] = ()
    #: dataset families with an evaluation network and recipe, e.g. ("cifar", "imagenet")
    families: tuple[str, ...] = ("cifar",)
    #: the dataset ``info`` sizes a genotype on when none is named (the one its papers report)
    info_dataset: str = "cifar10"
    #: the smallest sizes that still exercise everything: ``{"space": {...}, "network": {...}}``
    #: overrides of the search config's space section and the training config's network section
    #: (the tests that run over every registered space use them; so can quick demos)
    TINY: dict = {"space": {}, "network": {}}
    #: the method parts its supernet honours (:func:`noisydarts.methods.parts.check_support`
    #: refuses the rest in one line); the default: every weighting, partial channels, noise, drop-path
    supports: Support = Support()

    # --- search ---------------------------------------------------------------------------------
    def normalize(self, cfg: dict) -> None:
        """Fill ``space.*`` keys that follow from others, before any section is validated (the
        DARTS space: ``space.op_set`` sets ``space.ops``); the saved config shows the result."""

    def validate(self, cfg: dict) -> None:
        """Range checks of the ``space.*`` keys of a resolved search config (UserError)."""

    def partial_channels_problem(self, space_cfg: dict, k: int) -> str | None:
        """Why PC-DARTS' ``K = k`` does not fit this space's sizes (the fix, as one clause), or None."""
        return None

    def skip_op_problem(self, space_cfg: dict) -> str | None:
        """Why the NoisyDARTS skip transforms (noise, skip drop-path) would find no op to act on in
        this ``space`` section (one clause), or None."""
        return None

    def method_parts(self, cfg: dict) -> MethodParts:
        """The method's parts of a resolved search config, after :func:`check_support` (a space
        reads the method only through these, never the ``edge``/``noise``/``vdnas`` sections)."""
        check_support(self, cfg)
        return build_parts(cfg)

    def build_supernet(self, cfg: dict, num_classes: int, in_channels: int = 3):
        """The supernet of a resolved search config; its ``genotype()`` derives the genotype.
        Checks support, builds the method parts, lets :meth:`make_supernet` build the network and
        gives the supernet the parts' regularizers: a space implements :meth:`make_supernet`."""
        parts = self.method_parts(cfg)
        model = self.make_supernet(cfg, parts, num_classes, in_channels)
        model.add_regularizers(parts.regularizers)
        return model

    def make_supernet(self, cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3):
        """The supernet from the ``space`` section (and generic keys such as ``device``) and the
        method's ``parts``: the weighting factory, the skip transform, partial channels."""
        raise NotImplementedError

    def genotype_metrics(self, genotype) -> dict:
        """Numbers about a derived genotype worth logging every epoch (JSON scalars)."""
        return {}

    def describe(self, genotype) -> str:
        """What to tell the user about a final genotype besides its text (may be empty)."""
        return ""

    # --- genotypes ------------------------------------------------------------------------------
    def owns(self, genotype) -> bool:
        return isinstance(genotype, self.genotype_types)

    def check_genotype(self, genotype) -> None:
        """A genotype of another space handed to this one is a user error, in one line."""
        if not self.owns(genotype):
            raise UserError(f"the {self.name} space cannot build a network from a {type(genotype).__name__} "
                            f"(it takes {', '.join(t.__name__ for t in self.genotype_types)}): "
                            "give an architecture of this space")

    def parse(self, text: str):
        """The genotype written as ``text`` if it is in one of this space's text forms, else None.
        Text that is in this space's form but malformed raises UserError."""
        raise NotImplementedError

    def to_json(self, genotype):
        """The genotype as JSON data (what genotype.json stores under ``"genotype"``)."""
        raise NotImplementedError

    def from_json(self, data, type_name: str | None = None):
        """Inverse of :meth:`to_json`; ``type_name`` is genotype.json's ``"type"`` when present."""
        raise NotImplementedError

    # --- evaluation network -----------------------------------------------------------------------
    def check_family(self, family: str) -> None:
        if family not in self.families:
            raise UserError(f"the {self.name} space has evaluation networks for the {', '.join(self.families)} "
                            f"famil{'y' if len(self.families) == 1 else 'ies'}, not {family!r}")

    def network_defaults(self, family: str) -> dict:
        """The evaluation network's size keys for ``family`` (the train config's ``network`` section)."""
        raise NotImplementedError

    def recipe(self, family: str) -> dict:
        """The default training recipe for ``family``: a partial training config over
        :data:`noisydarts.train.DEFAULTS` (the papers' evaluation protocol for this space)."""
        return {}

    def validate_network(self, network: dict, family: str) -> None:
        """Range checks of the ``network`` section of a resolved training config."""

    def build_network(self, genotype, family: str, num_classes: int, network: dict | None = None,
                      in_channels: int = 3) -> nn.Module:
        """The stand-alone network of ``genotype``. In training mode it returns logits, or
        ``(logits, aux_logits)`` when it has an auxiliary head; in eval mode logits only. A
        network with drop-path has a ``drop_path_prob`` attribute the trainer schedules."""
        raise NotImplementedError

    def info(self, genotype, dataset: str | None = None) -> dict:
        """``{"params_m", "multadds_m"}`` as the papers count them: parameters without auxiliary
        heads, mult-adds for one image at the family's resolution (see :func:`count_multadds`).
        ``dataset`` None: the space's :attr:`info_dataset` (the one its papers size it on)."""
        num_classes, family = dataset_spec(dataset or self.info_dataset)
        self.check_genotype(genotype)
        self.check_family(family)
        resolution = FAMILIES[family]
        return self.measure(genotype, family, num_classes, self.network_defaults(family), resolution)

    def measure(self, genotype, family: str, num_classes: int, network: dict, resolution: int,
                in_channels: int = 3) -> dict:
        """``{"params_m", "multadds_m"}`` of the network of ``genotype`` with exactly these settings
        (a trained network's, as its run recorded them)."""
        self.check_genotype(genotype)
        self.check_family(family)
        # On the meta device: shapes only, no memory and no arithmetic, so counting is instant.
        with torch.device("meta"):
            model = self.build_network(genotype, family, num_classes, network, in_channels)
        return {"params_m": round(count_params(model), 4),
                "multadds_m": round(count_multadds(model, (1, in_channels, resolution, resolution)), 2)}

    # --- pictures ---------------------------------------------------------------------------------
    def edge_labels(self, space_cfg: dict, kind: str, num_rows: int) -> list[str]:
        """A name for each α row of cell type ``kind`` (e.g. ``'2 ← 0'``), for plots."""
        return [f"row {i}" for i in range(num_rows)]

    def cell_graphs(self, genotype) -> list[CellGraph]:
        """The genotype's cells as graphs, for the cell diagrams."""
        return []

    # --- shared helpers ---------------------------------------------------------------------------
    @staticmethod
    def merge_network(defaults: dict, given: dict | None, where: str = "network") -> dict:
        """``defaults`` with ``given`` over it; a key the space does not have is an error."""
        out = copy.deepcopy(defaults)
        for key, value in (given or {}).items():
            if key not in out:
                raise UserError(f"unknown {where} key {key!r}: this network has {', '.join(sorted(out)) or 'none'}")
            out[key] = value
        return out

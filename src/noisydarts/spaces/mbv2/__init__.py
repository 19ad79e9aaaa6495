"""NoisyDARTS' MobileNetV2 layer-wise space (NoisyDARTS Sec. 4.3; spec ``mbv2-space.md``).

* :mod:`.blocks`: the 19-layer skeleton (widths, strides, where the identity is allowed) and the
  blocks (MBConv, squeeze-and-excitation, stem + DS block, head);
* :mod:`.genotype`: :class:`LayerwiseGenotype`, 19 choice names, text and JSON forms;
* :mod:`.supernet`: the supernet (one α row per layer), the NoisyDARTS noise on the identity,
  the per-layer argmax derivation (``space.*`` keys);
* :mod:`.network`: the stand-alone network, with optional SE and Swish (``network.*`` keys).

Training recipes (:meth:`MBV2Space.recipe`): the paper gives none for ImageNet beyond "similar
tricks as EfficientNet" (Sec. 4.3). The ``imagenet`` recipe is the SGD recipe that the
ProxylessNAS release trains networks of this very skeleton with (``imagenet_run_exp.py``: 300
epochs, batch 256, Nesterov SGD lr 0.05 cosine, momentum 0.9, wd 4e-5, label smoothing 0.1) plus
EfficientNet-B0's regularizers (dropout 0.2, drop-connect 0.2), all expressible with the
trainer's keys. What EfficientNet has and the trainer lacks: RMSProp with exponential decay,
weight EMA, AutoAugment, and exempting BN from weight decay (ProxylessNAS does). The ``cifar``
recipe is the paper's CIFAR-10 transfer of NoisyDARTS-A (Sec. 4.4: 200 epochs, batch 256, lr 0.05,
wd 0, dropout 0.1, drop-connect 0.1), with cutout 16 standing in for AutoAugment.
"""

from __future__ import annotations

from ...errors import UserError
from ...methods.parts import MethodParts, Support
from ..base import CellGraph, Space
from . import supernet
from .blocks import ACTIVATIONS, CHOICES, IDENTITY, IDENTITY_LAYERS, NUM_LAYERS, STRIDES, MBConv
from .genotype import LayerwiseGenotype
from .network import MBV2Network
from .supernet import MBV2Supernet, MixedLayer, allowed_choices, derive, restrict

#: Nodes per row of the chain drawing (the 19 layers fold into rows, snake-wise).
_ROW = 7


class MBV2Space(Space):
    name = "mbv2"
    description = "NoisyDARTS' MobileNetV2 layer-wise space: 19 layers, MBConv E{3,6}xK{3,5,7} or identity each"
    DEFAULTS = supernet.DEFAULTS
    genotype_types = (LayerwiseGenotype,)
    families = ("cifar", "imagenet")
    info_dataset = "imagenet"  # NoisyDARTS-A is an ImageNet network (5.55 M, 447 M); CIFAR is its transfer
    TINY = {"space": {"width_mult": 0.1, "stem_stride": 1}, "network": {"width_mult": 0.1}}

    # --- search ---
    #: layer-wise: no partial channels (the MBConvs change width); every weighting, the noise and
    #: the drop-path on the identity
    supports = Support(partial_channels=False)

    def validate(self, cfg: dict) -> None:
        supernet.validate(cfg)

    def make_supernet(self, cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3):
        return supernet.build(cfg, parts, num_classes, in_channels)

    def genotype_metrics(self, genotype: LayerwiseGenotype) -> dict:
        return {"skip_count": genotype.count(IDENTITY)}

    def describe(self, genotype: LayerwiseGenotype) -> str:
        size = self.info(genotype, "imagenet")
        skips = genotype.count(IDENTITY)
        return (f"genotype: {genotype}\n"
                f"{skips} of the {len(IDENTITY_LAYERS)} layers that may be the identity chose it; "
                f"ImageNet network at 224 px: {size['params_m']:.2f} M params, {size['multadds_m']:.0f} M mult-adds "
                f"(NoisyDARTS-A without SE: 4.88 M)")

    # --- genotypes ---
    def parse(self, text: str):
        return LayerwiseGenotype.parse(text) if text.lstrip().startswith("LayerwiseGenotype") else None

    def to_json(self, genotype: LayerwiseGenotype):
        return genotype.to_dict()

    def from_json(self, data, type_name: str | None = None):
        return LayerwiseGenotype.from_dict(data)

    # --- evaluation network ---
    def network_defaults(self, family: str) -> dict:
        self.check_family(family)
        # se / activation null: as the genotype says (NoisyDARTS-A: 0.25 / swish; a search: 0 / relu).
        if family == "imagenet":
            return {"width_mult": 1.0, "se": None, "activation": None, "dropout": 0.2, "stem_stride": 2}
        return {"width_mult": 1.0, "se": None, "activation": None, "dropout": 0.1, "stem_stride": 1}

    def recipe(self, family: str) -> dict:
        if family == "imagenet":  # ProxylessNAS' SGD recipe + EfficientNet-B0's drop-connect (see the docstring)
            return {"epochs": 300, "batch_size": 256, "label_smoothing": 0.1,
                    "weights": {"lr": 0.05, "lr_schedule": "cosine", "momentum": 0.9, "nesterov": True,
                                "weight_decay": 4e-5, "grad_clip": None},
                    "auxiliary_weight": 0.0, "drop_path_prob": 0.2,
                    "data": {"resolution": 224, "crop_padding": 0, "flip": True, "cutout": 0}}
        # NoisyDARTS Sec. 4.4 (NoisyDARTS-A-t); the rest of the DARTS protocol; cutout for AutoAugment.
        return {"epochs": 200, "batch_size": 256, "weights": {"lr": 0.05, "weight_decay": 0.0}, "auxiliary_weight": 0.0,
                "drop_path_prob": 0.1, "data": {"cutout": 16}}

    def validate_network(self, network: dict, family: str) -> None:
        w = network["width_mult"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 4:
            raise UserError(f"network.width_mult must be in (0, 4], got {w!r}")
        se = network["se"]
        if not (se is None or se is False or (not isinstance(se, bool) and isinstance(se, (int, float)) and 0 <= se <= 1)):
            raise UserError(f"network.se must be a ratio in [0, 1] (0 or false = no SE, null = the genotype's), got {se!r}")
        if network["activation"] is not None and network["activation"] not in ACTIVATIONS:
            raise UserError(f"network.activation must be {' or '.join(ACTIVATIONS)} (null = the genotype's), "
                            f"got {network['activation']!r}")
        d = network["dropout"]
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise UserError(f"network.dropout must be in [0, 1), got {d!r}")
        if network["stem_stride"] not in (1, 2):
            raise UserError(f"network.stem_stride must be 1 (32x32 images) or 2 (ImageNet), got {network['stem_stride']!r}")

    def build_network(self, genotype, family: str, num_classes: int, network: dict | None = None,
                      in_channels: int = 3):
        self.check_genotype(genotype)
        net = self.merge_network(self.network_defaults(family), network)
        self.validate_network(net, family)
        se = genotype.se if net["se"] is None else float(net["se"] or 0.0)
        activation = net["activation"] or genotype.activation
        return MBV2Network(genotype, num_classes, float(net["width_mult"]), se, activation, float(net["dropout"]),
                           net["stem_stride"], in_channels)

    # --- pictures ---
    def edge_labels(self, space_cfg: dict, kind: str, num_rows: int) -> list[str]:
        return [f"layer {i}" for i in range(num_rows)]

    def cell_graphs(self, genotype: LayerwiseGenotype) -> list[CellGraph]:
        """The 19 layers as a chain of 20 nodes (node i feeds layer i), folded snake-wise into rows."""
        positions = {}
        for n in range(NUM_LAYERS + 1):
            row, col = divmod(n, _ROW)
            col = col if row % 2 == 0 else _ROW - 1 - col
            positions[str(n)] = (2.5 * col, -2.0 * row)
        edges = [(str(i), str(i + 1), choice) for i, choice in enumerate(genotype.layers)]
        strided = ", ".join(str(i) for i in range(NUM_LAYERS) if STRIDES[i] == 2)
        title = (f"{genotype.count(IDENTITY)} identity layers (skip_connect) of {len(IDENTITY_LAYERS)} allowed; "
                 f"layers {strided} stride 2" + (f"; SE {genotype.se:g}" if genotype.se else "")
                 + (f", {genotype.activation}" if genotype.activation != "relu" else ""))
        return [CellGraph(title, positions, edges, inputs=("0",), outputs=(str(NUM_LAYERS),))]


SPACE = MBV2Space()

__all__ = ["CHOICES", "IDENTITY_LAYERS", "SPACE", "LayerwiseGenotype", "MBConv", "MBV2Network", "MBV2Space",
           "MBV2Supernet", "MixedLayer", "allowed_choices", "derive", "restrict"]

"""The smallest complete search space: a chain of layers, each choosing one operation.

Register it and every command works on it (search, train, info, evaluate, export, plot)::

    import noisydarts
    from examples.chain_space import SPACE          # importing registers it
    result = noisydarts.search({"space": {"name": "chain"}, "epochs": 1, "data": {"limit": 256}})
    noisydarts.train(result.run_dir, {"epochs": 1})

A layer-wise space like this one (one α row per layer, per-layer argmax) is also the shape of
NoisyDARTS' MobileNetV2 space.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from dataclasses import dataclass

from noisydarts.errors import UserError
from noisydarts.methods.weightings import build_weighting
from noisydarts.nn.mixed import MixedEdge
from noisydarts.nn.ops import build_op, check_op_list
from noisydarts.spaces import CellGraph, Space, register_space
from noisydarts.nn.supernet import Supernet

OPS = ("skip_connect", "nor_conv_3x3", "avg_pool_3x3")


@dataclass(frozen=True)
class ChainGenotype:
    """The op of every layer; text form ``chain:op,op,...``."""

    ops: tuple[str, ...]

    def __post_init__(self):
        if not self.ops or any(op not in OPS for op in self.ops):
            raise UserError(f"a chain genotype lists one op per layer, each one of {', '.join(OPS)}")

    def __str__(self) -> str:
        return "chain:" + ",".join(self.ops)


class ChainSupernet(Supernet):
    kinds = ("layer",)  # one α matrix [layers, ops]: a row per layer

    def __init__(self, num_classes, channels, layers, ops, parts, in_channels=3):
        super().__init__()
        self.op_names, self.noise = list(ops), parts.skip_transform
        self.arch["alpha_layer"] = nn.Parameter(1e-3 * torch.randn(layers, len(ops)))
        # the method's weighting; each layer is one edge into its own node (edge targets 0, 1, ...)
        self.weighting = build_weighting(parts.weighting, self.arch, self.kinds, range(layers))
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.layers = nn.ModuleList(MixedEdge(ops, channels, 1, op_transforms=parts.op_transforms(stride=1),
                                              partial_channels=parts.partial_channels) for _ in range(layers))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x):
        weights, edge_weights = self.mixing_weights(x.shape[0])["layer"]  # op weights, edge weights or None
        x = self.stem(x)
        for i, (layer, w) in enumerate(zip(self.layers, weights.unbind(0))):
            x = layer(x, w, None if edge_weights is None else edge_weights[i])
        return self.head(x)

    def genotype(self) -> ChainGenotype:
        best = self.arch_weights()["layer"].argmax(dim=1)
        return ChainGenotype(tuple(self.op_names[int(k)] for k in best))


class ChainNetwork(nn.Module):
    def __init__(self, genotype, num_classes, channels, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.layers = nn.Sequential(*(build_op(op, channels, 1, affine=True) for op in genotype.ops))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


class ChainSpace(Space):
    name = "chain"
    description = "a chain of layers, one op each (the smallest complete space)"
    DEFAULTS = {"channels": 16, "layers": 4, "ops": list(OPS)}
    genotype_types = (ChainGenotype,)
    families = ("cifar",)
    TINY = {"space": {"channels": 4, "layers": 2}, "network": {"channels": 4}}

    # supports = Support(...): the default, every weighting, partial channels, noise and drop-path
    # but not DARTS-' auxiliary skip (it would need self.auxiliary_skip = parts.auxiliary_skip on the
    # supernet, MixedEdge(..., auxiliary_skip=parts.auxiliary_skip) and Support(auxiliary_skip=True))

    def validate(self, cfg):
        check_op_list(cfg["space"]["ops"], OPS)

    def partial_channels_problem(self, space_cfg, k):
        return None if space_cfg["channels"] % k == 0 else "space.channels must be a multiple of edge.partial_channels"

    def make_supernet(self, cfg, parts, num_classes, in_channels=3):
        s = cfg["space"]  # the method comes as parts (weighting, skip transform, partial channels)
        return ChainSupernet(num_classes, s["channels"], s["layers"], s["ops"], parts, in_channels)

    def genotype_metrics(self, genotype):
        return {"skip_count": genotype.ops.count("skip_connect")}

    def parse(self, text):
        return ChainGenotype(tuple(text.strip()[len("chain:"):].split(","))) if text.startswith("chain:") else None

    def to_json(self, genotype):
        return list(genotype.ops)

    def from_json(self, data, type_name=None):
        return ChainGenotype(tuple(data))

    def network_defaults(self, family):
        self.check_family(family)
        return {"channels": 16}

    def recipe(self, family):
        return {"epochs": 100, "auxiliary_weight": 0.0, "drop_path_prob": 0.0}

    def build_network(self, genotype, family, num_classes, network=None, in_channels=3):
        self.check_genotype(genotype)
        net = self.merge_network(self.network_defaults(family), network)
        return ChainNetwork(genotype, num_classes, net["channels"], in_channels)

    def edge_labels(self, space_cfg, kind, num_rows):
        return [f"layer {i}" for i in range(num_rows)]

    def cell_graphs(self, genotype):
        positions = {str(i): (2.6 * i, 0.0) for i in range(len(genotype.ops) + 1)}
        edges = [(str(i), str(i + 1), op) for i, op in enumerate(genotype.ops)]
        return [CellGraph(str(genotype), positions, edges, inputs=("0",), outputs=(str(len(genotype.ops)),))]


SPACE = register_space(ChainSpace())

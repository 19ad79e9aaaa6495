"""The layer-wise genotype: one choice per searchable layer of the MobileNetV2 skeleton.

Text form (what metrics.jsonl, genotype.json's ``text`` and every command print and read)::

    LayerwiseGenotype(layers=['mb6_k3', 'mb3_k3', 'mb6_k5', ...])                     # 19 names
    LayerwiseGenotype(layers=[...], se=0.25, activation='swish')                    # NoisyDARTS-A as released

JSON form (genotype.json's ``genotype``): ``{"layers": [...], "se": 0.0, "activation": "relu"}``.

``se`` and ``activation`` describe the blocks the way timm arch-defs do (``_se0.25_nsw``): a search
derives plain MobileNetV2 blocks (``se=0``, ReLU); the released NoisyDARTS-A carries SE 0.25 and
Swish. The network keys ``network.se`` / ``network.activation`` override them when set.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from ..literals import parse_call
from .blocks import ACTIVATIONS, CHOICES, IDENTITY, IDENTITY_LAYERS, NUM_LAYERS

EXAMPLE = "LayerwiseGenotype(layers=['mb6_k3', 'mb3_k3', ...19 choices], se=0.25, activation='swish')"


@dataclass(frozen=True)
class LayerwiseGenotype:
    layers: tuple[str, ...]
    se: float = 0.0
    activation: str = "relu"

    def __post_init__(self):
        if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
            raise UserError(f"a layer-wise genotype lists one choice per layer: {EXAMPLE}")
        layers = tuple(str(c) for c in self.layers)
        if len(layers) != NUM_LAYERS:
            raise UserError(f"a layer-wise genotype has {NUM_LAYERS} layers, got {len(layers)}: {EXAMPLE}")
        unknown = [c for c in layers if c not in CHOICES]
        if unknown:
            raise UserError(f"unknown layer choice {unknown[0]!r}: choose from {', '.join(CHOICES)}")
        misplaced = [i for i, c in enumerate(layers) if c == IDENTITY and i not in IDENTITY_LAYERS]
        if misplaced:
            raise UserError(f"layer {misplaced[0]} cannot be {IDENTITY} (it changes stride or width); the identity is a "
                            f"choice only in layers {', '.join(map(str, IDENTITY_LAYERS))}")
        se = self.se if self.se is not None else 0.0
        if isinstance(se, bool) or not isinstance(se, (int, float)) or not 0.0 <= se <= 1.0:
            raise UserError(f"the genotype's se must be a ratio in [0, 1] (0 = no squeeze-and-excitation), got {self.se!r}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"the genotype's activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "se", float(se))

    def count(self, choice: str) -> int:
        return self.layers.count(choice)

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "se": self.se, "activation": self.activation}

    @classmethod
    def from_dict(cls, d) -> "LayerwiseGenotype":
        if isinstance(d, list):  # the bare list of choices
            d = {"layers": d}
        if not isinstance(d, dict) or "layers" not in d or not set(d) <= {"layers", "se", "activation"}:
            raise UserError(f"a layer-wise genotype has the keys layers (and optionally se, activation): {EXAMPLE}")
        return cls(d["layers"], d.get("se", 0.0), d.get("activation", "relu"))

    @classmethod
    def parse(cls, text: str) -> "LayerwiseGenotype":
        return cls.from_dict(parse_call(text, "LayerwiseGenotype", EXAMPLE, ("layers", "se", "activation")))

    def __str__(self) -> str:
        extra = (f", se={self.se:g}" if self.se else "") + (f", activation={self.activation!r}"
                                                            if self.activation != "relu" else "")
        return f"LayerwiseGenotype(layers={list(self.layers)!r}{extra})"

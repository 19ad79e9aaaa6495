"""The MobileNetV2 layer-wise supernet and its derivation (NoisyDARTS Sec. 4.3).

The fixed skeleton of :mod:`.blocks` (stem, DS block, 19 searchable layers, 1x1 conv to 1280,
pooling, classifier); each searchable layer is a :class:`MixedLayer` over the choices of
``space.ops``: MBConv expansion {3, 6} x kernel {3, 5, 7} and, where stride is 1 and in = out
(13 of the 19 layers), the identity ``skip_connect``.

**One α row per layer, 7 columns.** ``alpha_layer`` is a ``[19, len(ops)]`` matrix (``kinds =
("layer",)``). In the 6 layers without an identity, the identity's column is masked: after the
weighting, its weight is set to 0 and the row is rescaled to its former total, which for the
softmax is exactly the softmax over the layer's own 6 choices; its α entry is never chosen and
its gradient is exactly 0 (a gradient hook removes the float rounding). Every row has the same length, so metrics, plots and derivation treat the 19
layers alike. That these 6 layers have 6 choices (not a projection "skip") is our reading: the
paper does not say (spec ``mbv2-space.md``).

**NoisyDARTS.** The identity's output gets the noise of :class:`noisydarts.methods.noise.SkipNoise`
through the same op transform as in the cell spaces (keyed by ``skip_connect``): Eq. 6 with
``o_skip(x) = x``. MBConvs whose stride is 1 and in = out keep their own residual (ProxylessNAS,
FairNAS), so such a layer computes ``x + sum_k w_k body_k(x) + w_skip * noise``.

**BatchNorm** in the candidate blocks has no affine parameters by default (``space.affine``), as
in DARTS search cells; stem, DS block and head are affine.

**Derivation** (:func:`derive`) is the per-layer argmax, the identity included where allowed.

**Memory.** The full supernet keeps about 0.32 GB of activations per 224 px image (fp32), so the
paper's batch 768 would need about 240 GB. ``space.checkpoint`` recomputes each layer in the
backward pass (:func:`noisydarts.nn.recompute.recompute`) and keeps only the layers' inputs,
for about one more forward pass of compute, with the same numbers (noise replayed, BN running
statistics updated once); ``auto`` (the default) turns it on on a GPU only.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ...nn.recompute import check_checkpoint, recompute, resolve_checkpoint
from ...errors import UserError
from ...methods.parts import MethodParts
from ...methods.weightings import build_weighting
from ...nn.mixed import apply_op
from ...nn.ops import check_op_list
from ...nn.supernet import Supernet
from .blocks import CHOICES, IDENTITY, IDENTITY_LAYERS, INPUTS, NUM_LAYERS, STRIDES, WIDTHS, MBConv, head, init_weights, mbconv_shape, scaled, stem
from .genotype import LayerwiseGenotype

DEFAULTS = {
    "width_mult": 1.0,    # channels of every layer x this (rounded to multiples of 8)
    "stem_stride": 2,     # 2 on ImageNet (224 px); 1 for CIFAR-sized images
    "ops": list(CHOICES),
    "affine": False,      # affine BN in the candidate blocks (DARTS search cells: no)
    "checkpoint": "auto",  # recompute each layer in the backward pass (true | false | auto: on a GPU)
}


def allowed_choices(op_names) -> torch.Tensor:
    """``[19, len(op_names)]`` bool: which choices each layer has (the identity only in the 13
    layers with stride 1 and in = out)."""
    allowed = torch.ones(NUM_LAYERS, len(op_names), dtype=torch.bool)
    if IDENTITY in op_names:
        no_identity = [i for i in range(NUM_LAYERS) if i not in IDENTITY_LAYERS]
        allowed[no_identity, list(op_names).index(IDENTITY)] = False
    return allowed


def restrict(weights: torch.Tensor, allowed: torch.Tensor, reference: torch.Tensor | None = None,
             rescale: bool = True) -> torch.Tensor:
    """Zero the weights of choices a layer does not have and rescale each row to its former total
    (for the softmax: exactly the softmax over the allowed choices).

    ``weights``: ``[layers, ops]`` or per-sample ``[layers, ops, B, 1, 1, 1]``; ``allowed``:
    ``[layers, ops]``. The rescaling factor of a row is taken from ``reference`` (``[layers, ops]``,
    deterministic: a stochastic weighting's mean weights, whose sampled rows may sum to 0) or, by
    default, from ``weights`` themselves. ``rescale=False`` only zeroes (weights that are not
    normalized, e.g. SI-VDNAS' raw parametrization, have no total to keep)."""
    if weights.dim() == 2 and reference is None:
        kept = weights * allowed
        return kept * (weights.sum(-1, keepdim=True) / kept.sum(-1, keepdim=True)) if rescale else kept
    tail = (1,) * (weights.dim() - 2)
    kept = weights * allowed.view(*allowed.shape, *tail)
    if not rescale:
        return kept
    ref = weights if reference is None else reference
    if ref.dim() != 2:
        raise ValueError("restrict: per-sample weights need a [layers, ops] reference for the rescaling")
    scale = ref.sum(-1) / (ref * allowed).sum(-1)
    return kept * scale.view(-1, 1, *tail).to(kept.dtype)


class MixedLayer(nn.Module):
    """``sum_k w_k o_k(x)`` over the choices this layer has (NoisyDARTS Eq. 6): the counterpart of
    :class:`noisydarts.nn.mixed.MixedEdge` for blocks that change width and stride. ``op_transforms``
    act on one choice's output by name (the NoisyDARTS noise on ``skip_connect``)."""

    def __init__(self, op_names, C_in: int, C_out: int, stride: int, identity_allowed: bool, *,
                 residual: bool, affine: bool = False, op_transforms: dict[str, Callable] | None = None):
        super().__init__()
        self.op_names = list(op_names)
        self.active = [k for k, name in enumerate(self.op_names) if name != IDENTITY or identity_allowed]
        ops = []
        for k in self.active:
            if self.op_names[k] == IDENTITY:
                ops.append(nn.Identity())
            else:
                e, kernel = mbconv_shape(self.op_names[k])
                ops.append(MBConv(C_in, C_out, e, kernel, stride, residual=residual, affine=affine))
        self.ops = nn.ModuleList(ops)
        # A plain list, not submodules: the noise is one module, registered once on the supernet.
        transforms = op_transforms or {}
        self.transforms = [transforms.get(self.op_names[k]) for k in self.active]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: this layer's row, one entry per op name (0 where the choice is absent)."""
        w = weights.unbind(0)
        out = None
        for k, op, transform in zip(self.active, self.ops, self.transforms):
            y = apply_op(op, x, transform)
            out = y * w[k] if out is None else out + y * w[k]
        return out


class MBV2Supernet(Supernet):
    kinds = ("layer",)

    def __init__(self, num_classes: int, width_mult: float = 1.0, stem_stride: int = 2, ops=CHOICES, *,
                 noise: nn.Module | None = None, weighting="softmax", affine: bool = False,
                 checkpoint: bool = False, in_channels: int = 3):
        super().__init__()
        self.op_names = list(ops)
        self.checkpoint = checkpoint
        self.noise = noise
        self.arch["alpha_layer"] = nn.Parameter(1e-3 * torch.randn(NUM_LAYERS, len(self.op_names)))
        # Each layer is its own node: edge normalization (PC-DARTS) and SI-VDNAS' edge weights
        # are a softmax over one edge, i.e. 1 (their edge dropout still acts per layer).
        self.weighting = build_weighting(weighting, self.arch, self.kinds, list(range(NUM_LAYERS)))
        self.register_buffer("allowed", allowed_choices(self.op_names), persistent=False)
        # The masked entries' gradient is zero analytically; float rounding leaves ~1e-7 of the
        # others', which Adam would normalize into full-size steps: make it exactly zero.
        self.arch["alpha_layer"].register_hook(self._mask_gradient)
        self.stem = stem(in_channels, width_mult, stem_stride)
        transforms = {IDENTITY: noise} if noise is not None else None
        self.layers = nn.ModuleList(
            MixedLayer(self.op_names, scaled(INPUTS[i], width_mult), scaled(WIDTHS[i], width_mult), STRIDES[i],
                       i in IDENTITY_LAYERS, residual=i in IDENTITY_LAYERS, affine=affine, op_transforms=transforms)
            for i in range(NUM_LAYERS))
        self.head = head(width_mult)
        self.classifier = nn.Linear(self.head[0].out_channels, num_classes)
        init_weights(self)  # the weight modules only: alpha keeps its small random start

    def _mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.allowed

    def layer_weights(self, batch_size: int | None = None) -> torch.Tensor:
        """``[19, ops]`` effective weights (``[19, ops, B, 1, 1, 1]`` from a per-sample weighting in
        training mode): the weighting's, restricted to each layer's choices. A stochastic weighting
        is rescaled by its reference (mean) weights' row totals (``Weighting.reference_weights``),
        so the restriction is the same for every sample and never divides by a sampled 0."""
        if batch_size is None:
            w, edge = self.weighting("layer"), self.weighting.edge_weights("layer")
        else:
            w, edge = self.mixing_weights(batch_size)["layer"]
        w = restrict(w, self.allowed, self.weighting.reference_weights("layer"), rescale=self.weighting.normalized)
        if edge is not None:  # one edge per node: edge normalization gives 1 (kept for the graph)
            w = w * edge.view(-1, *(1,) * (w.dim() - 1))
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.layer_weights(x.shape[0]).unbind(0)
        x = self.stem(x)
        for layer, w in zip(self.layers, rows):
            if self.checkpoint and torch.is_grad_enabled():
                # The RNG state is replayed, so the recomputation draws the same noise.
                x = recompute(layer, layer, x, w)
            else:
                x = layer(x, w)
        return self.classifier(self.head(x))

    def compile_regions(self) -> list[nn.Module]:
        """Every mixed layer (:mod:`noisydarts.nn.compiling`)."""
        return list(self.layers)

    @torch.no_grad()
    def arch_weights(self) -> dict[str, torch.Tensor]:
        weights = super().arch_weights()
        return {"layer": restrict(weights["layer"], self.allowed.cpu())}

    def genotype(self) -> LayerwiseGenotype:
        return derive(self.arch_weights()["layer"], self.op_names)


def derive(weights: torch.Tensor, op_names) -> LayerwiseGenotype:
    """Per layer, the choice with the largest weight among the choices the layer has (the identity
    only where allowed); ties go to the earlier choice. A pure function of ``[19, ops]`` weights."""
    weights = torch.as_tensor(weights, dtype=torch.float64)
    op_names = list(op_names)
    if weights.shape != (NUM_LAYERS, len(op_names)):
        raise UserError(f"layer-wise weights must be [{NUM_LAYERS}, {len(op_names)}], got {list(weights.shape)}")
    best = weights.masked_fill(~allowed_choices(op_names), float("-inf")).argmax(dim=1)
    return LayerwiseGenotype(tuple(op_names[int(k)] for k in best))


def build(cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3) -> MBV2Supernet:
    """The supernet of a resolved search config's ``space`` section and the method's parts
    (no partial channels: ``MBV2Space.supports`` refuses K > 1)."""
    space = cfg["space"]
    return MBV2Supernet(num_classes, space["width_mult"], space["stem_stride"], space["ops"],
                        noise=parts.skip_transform, weighting=parts.weighting,
                        affine=space["affine"], checkpoint=resolve_checkpoint(space["checkpoint"], cfg.get("device")),
                        in_channels=in_channels)


def validate(cfg: dict) -> None:
    space = cfg["space"]
    check_op_list(space["ops"], CHOICES)
    check_checkpoint(space["checkpoint"])
    if not any(op != IDENTITY for op in space["ops"]):
        raise UserError("space.ops needs at least one MBConv choice (6 of the 19 layers have no identity)")
    if not (isinstance(space["width_mult"], (int, float)) and 0 < space["width_mult"] <= 4):
        raise UserError(f"space.width_mult must be in (0, 4], got {space['width_mult']!r}")
    if space["stem_stride"] not in (1, 2):
        raise UserError(f"space.stem_stride must be 1 (CIFAR-sized images) or 2 (ImageNet), got {space['stem_stride']!r}")

"""Primitive operations, by name.

``OPS[name](C, stride, affine)`` builds a module that maps ``C`` channels to ``C`` channels
(spatial size divided by ``stride``). The DARTS primitives follow the DARTS release:
ReLU-conv-BN ordering, separable convolutions applied twice, and a factorized reduction for a
skip connection at stride 2. The NAS-Bench-201 primitives (``nor_conv_*``) are ReLU-conv-BN.

During search every BatchNorm is built with ``affine=False`` (DARTS); NAS-Bench-201 search
additionally keeps no running statistics. Both are passed down through :func:`batch_norm`'s
arguments, so the same registry serves search cells and final networks.

New primitives are added with :func:`register_op`::

    @register_op("conv_7x1_1x7")
    def _conv_7x1_1x7(C, stride, affine, track_stats=True): ...
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..errors import UserError

OpFactory = Callable[..., nn.Module]
OPS: dict[str, OpFactory] = {}

#: The DARTS cell-space primitives, in the order of the DARTS release (``none`` first).
DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: NoisyDARTS searches the DARTS space without ``none`` (Sec. 4.1 of NoisyDARTS).
NOISYDARTS_OPS = DARTS_OPS[1:]


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    def wrap(factory: OpFactory) -> OpFactory:
        OPS[name] = factory
        return factory

    return wrap


def build_op(name: str, C: int, stride: int, affine: bool, track_stats: bool = True) -> nn.Module:
    if name not in OPS:
        raise UserError(f"unknown operation {name!r}: choose from {', '.join(sorted(OPS))}")
    return OPS[name](C, stride, affine, track_stats)


def check_op_list(ops, allowed=None, key: str = "space.ops") -> None:
    """A searchable op list: known names, no repeats, something besides ``none``."""
    allowed = list(allowed) if allowed is not None else sorted(OPS)
    unknown = [op for op in ops if op not in allowed]
    if unknown:
        from ..errors import suggest

        raise UserError(f"unknown operation {unknown[0]!r} in {key}{suggest(unknown[0], allowed)}: choose from "
                        f"{', '.join(allowed)}")
    if not [op for op in ops if op != "none"]:
        raise UserError(f"{key} needs at least one operation besides 'none'")
    if len(set(ops)) != len(ops):
        raise UserError(f"{key} lists an operation twice")


def batch_norm(C: int, affine: bool, track_stats: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(C, affine=affine, track_running_stats=track_stats)


class NoiseOp(nn.Module):
    """RobustDARTS' ``noise`` operation (Zela et al., ICLR 2020, Sec. 4.1, space S4): its output
    replaces every value of the (strided) input by a draw of N(0, 1); it has no parameters and
    passes no gradient to its input. It draws in evaluation mode too, as in the RobustDARTS
    release (``operations.py``), so a network with a ``noise`` edge is not deterministic."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return torch.randn_like(x)


class Zero(nn.Module):
    """The ``none`` operation. Mixed edges never call it (its output is zero), see mixed.py."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True, track_stats=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            batch_norm(C_out, affine, track_stats),
        )


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise conv (no bias) that computes dilated kernels as undilated ones.

    A kernel with dilation ``d`` only ever combines pixels that share their row and column
    phase modulo ``d``. So the same numbers come out of an ordinary conv run on the ``d x d``
    phase sub-images, batched together: at stride ``d`` only phase (0, 0) is needed at all, at
    stride 1 the ``d*d`` phases are stacked into the batch. CPU conv libraries run undilated
    depthwise kernels several times faster than dilated ones, forward and backward alike (see
    benchmarks/search_step.py). Parameters are those of ``nn.Conv2d``, so weights are portable.
    """

    def __init__(self, C, kernel_size, stride, padding, dilation=1):
        super().__init__(C, C, kernel_size, stride, padding, dilation=dilation, groups=C, bias=False)
        d, k = dilation, kernel_size
        self.by_phase = d > 1 and padding == d * (k - 1) // 2 and stride in (1, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        if not self.by_phase or (self.stride[0] == 1 and (x.shape[2] % d or x.shape[3] % d)):
            return super().forward(x)
        pad = (self.kernel_size[0] - 1) // 2
        if self.stride[0] == d:
            return nn.functional.conv2d(x[:, :, ::d, ::d], self.weight, None, 1, pad, 1, self.groups)
        B, C, H, W = x.shape
        # Work on the NHWC view so that channels_last inputs need no layout change.
        phases = (x.permute(0, 2, 3, 1).reshape(B, H // d, d, W // d, d, C)
                  .permute(2, 4, 0, 1, 3, 5).reshape(d * d * B, H // d, W // d, C).permute(0, 3, 1, 2))
        y = nn.functional.conv2d(phases, self.weight, None, 1, pad, 1, self.groups)
        y = (y.permute(0, 2, 3, 1).reshape(d, d, B, H // d, W // d, C)
             .permute(2, 3, 0, 4, 1, 5).reshape(B, H, W, C))
        return y.permute(0, 3, 1, 2)


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True, track_stats=True):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel_size, stride, padding, dilation),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            batch_norm(C_out, affine, track_stats),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConvs with dilation 1; only the first one strides (DARTS)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True, track_stats=True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine, track_stats),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine, track_stats),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, concatenated (DARTS)."""

    def __init__(self, C_in, C_out, affine=True, track_stats=True):
        super().__init__()
        if C_out % 2:
            raise UserError(f"factorized reduce needs an even channel count, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = batch_norm(C_out, affine, track_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # A 1x1 conv at stride 2 reads every other pixel, so it is run as a 1x1 conv on the
        # subsampled input: the same numbers, and it avoids oneDNN's strided 1x1 path, which
        # corrupts memory on channels_last inputs when single-threaded (torch 2.14, CPU).
        # The second branch sees the input shifted by one pixel, so together they cover it;
        # odd sizes get a zero row/column, as a zero-padded stride-2 conv would.
        even, odd = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
        if odd.shape[2:] != even.shape[2:]:
            odd = nn.functional.pad(odd, (0, even.shape[3] - odd.shape[3], 0, even.shape[2] - odd.shape[2]))
        return self.bn(torch.cat([nn.functional.conv2d(even, self.conv_1.weight),
                                  nn.functional.conv2d(odd, self.conv_2.weight)], dim=1))


@register_op("none")
def _none(C, stride, affine, track_stats=True):
    return Zero(stride)


@register_op("noise")
def _noise(C, stride, affine, track_stats=True):
    return NoiseOp(stride)


@register_op("skip_connect")
def _skip(C, stride, affine, track_stats=True):
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine, track_stats)


@register_op("avg_pool_3x3")
def _avg_pool(C, stride, affine, track_stats=True):
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("max_pool_3x3")
def _max_pool(C, stride, affine, track_stats=True):
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("sep_conv_3x3")
def _sep3(C, stride, affine, track_stats=True):
    return SepConv(C, C, 3, stride, 1, affine, track_stats)


@register_op("sep_conv_5x5")
def _sep5(C, stride, affine, track_stats=True):
    return SepConv(C, C, 5, stride, 2, affine, track_stats)


@register_op("sep_conv_7x7")
def _sep7(C, stride, affine, track_stats=True):
    return SepConv(C, C, 7, stride, 3, affine, track_stats)


@register_op("dil_conv_3x3")
def _dil3(C, stride, affine, track_stats=True):
    return DilConv(C, C, 3, stride, 2, 2, affine, track_stats)


@register_op("dil_conv_5x5")
def _dil5(C, stride, affine, track_stats=True):
    return DilConv(C, C, 5, stride, 4, 2, affine, track_stats)


@register_op("nor_conv_1x1")
def _nor1(C, stride, affine, track_stats=True):
    return ReLUConvBN(C, C, 1, stride, 0, affine, track_stats)


@register_op("nor_conv_3x3")
def _nor3(C, stride, affine, track_stats=True):
    return ReLUConvBN(C, C, 3, stride, 1, affine, track_stats)


#: Pooling ops get a BatchNorm after them inside DARTS search cells, as the DARTS and
#: NoisyDARTS releases do, so that their scale is comparable with the other ops' outputs.
POOLING_OPS = frozenset({"max_pool_3x3", "avg_pool_3x3"})

"""The MobileNetV2 skeleton of the space and its building blocks, shared by supernet and network.

The skeleton is the 19-layer supernet of ProxylessNAS / FairNAS / ScarletNAS that NoisyDARTS
searches on ImageNet (NoisyDARTS Sec. 4.3; the widths and strides of the release's NoisyDARTS-A
arch-def, ``verify_se.py``): a 3x3 stride-2 stem conv to 32 channels, a depthwise-separable block
(DS, k3) to 16, then 19 searchable layers, a 1x1 conv to 1280, global pooling and a classifier.

Blocks follow MobileNetV2 (Sandler et al., 2018) and timm's EfficientNet blocks, which the
release builds NoisyDARTS-A with:

* :class:`MBConv`: the inverted residual, 1x1 expand-BN-act, kxk depthwise-BN-act, an optional
  squeeze-and-excitation, 1x1 project-BN (linear), plus the input when stride is 1 and in = out;
* :class:`SqueezeExcite`: global pool, 1x1 reduce (with bias), act, 1x1 expand (with bias), sigmoid
  gate; its width is ``se_ratio`` times the *block's input* channels (timm's ``se_ratio``, reduced
  base = ``in_chs``), not of the expanded channels;
* the stem, the DS block and the head use ReLU; only the 19 searched blocks switch to Swish in
  the SE+Swish variant (the release passes ``act_layer=nn.ReLU`` to the model and ``_nsw`` to the
  searched blocks only).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..darts.network import drop_path

STEM_CHANNELS, DS_CHANNELS, HEAD_CHANNELS = 32, 16, 1280
#: Output channels and stride of the 19 searchable layers (at width multiplier 1).
WIDTHS = (32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320)
STRIDES = (2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)
NUM_LAYERS = len(WIDTHS)
#: Input channels of every layer: the DS block's output, then the previous layer's.
INPUTS = (DS_CHANNELS,) + WIDTHS[:-1]
#: The layers where the identity is a choice: stride 1 and in = out (13 of the 19). Decided on the
#: skeleton's own widths, so the space is the same at every width multiplier.
IDENTITY_LAYERS = tuple(i for i in range(NUM_LAYERS) if STRIDES[i] == 1 and INPUTS[i] == WIDTHS[i])

IDENTITY = "skip_connect"  # the identity choice, named as everywhere else (so the noise finds it)
#: The choices of a layer: MBConv expansion {3, 6} x kernel {3, 5, 7}, then the identity.
CHOICES = tuple(f"mb{e}_k{k}" for e in (3, 6) for k in (3, 5, 7)) + (IDENTITY,)
ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU}


def mbconv_shape(choice: str) -> tuple[int, int]:
    """``(expansion, kernel)`` of an MBConv choice name ``mb{e}_k{k}``."""
    e, k = choice[2:].split("_k")
    return int(e), int(k)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10 % down
    (MobileNetV2's and timm's rule for width multipliers)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def scaled(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult)


def head_channels(width_mult: float) -> int:
    """MobileNetV2 (Sec. 6.1) keeps the last conv at 1280 for multipliers below 1."""
    return scaled(HEAD_CHANNELS, max(1.0, width_mult))


def bn(C: int, affine: bool = True, track_stats: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(C, affine=affine, track_running_stats=track_stats)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018) on ``C`` channels through ``reduced`` channels."""

    def __init__(self, C: int, reduced: int, act: type[nn.Module]):
        super().__init__()
        self.reduce = nn.Conv2d(C, reduced, 1, bias=True)
        self.act = act()
        self.expand = nn.Conv2d(reduced, C, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


def se_channels(C_in: int, se_ratio: float) -> int:
    """timm's SE width: ``se_ratio`` of the block's input channels, rounded (divisor 1)."""
    return make_divisible(C_in * se_ratio, 1)


class MBConv(nn.Module):
    """The inverted residual block (MobileNetV2 Fig. 3b): ``C_in -> C_in*expansion -> C_out``.

    ``residual`` adds the input (stride 1 and in = out); ``drop_prob`` in :meth:`forward` drops
    the residual branch per sample (drop-connect, as EfficientNet), training mode only."""

    def __init__(self, C_in: int, C_out: int, expansion: int, kernel: int, stride: int, *, residual: bool,
                 se_ratio: float = 0.0, activation: str = "relu", affine: bool = True, track_stats: bool = True):
        super().__init__()
        act = ACTIVATIONS[activation]
        mid = C_in * expansion
        self.expand = nn.Sequential(nn.Conv2d(C_in, mid, 1, bias=False), bn(mid, affine, track_stats), act())
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), bn(mid, affine, track_stats), act())
        self.se = SqueezeExcite(mid, se_channels(C_in, se_ratio), act) if se_ratio else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(mid, C_out, 1, bias=False), bn(C_out, affine, track_stats))
        self.residual = residual

    def forward(self, x: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        if not self.residual:
            return y
        if self.training and drop_prob > 0:
            y = drop_path(y, drop_prob)
        return x + y


class Identity(nn.Module):
    """The identity choice of a stand-alone network (takes and ignores a drop probability)."""

    def forward(self, x: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        return x


def stem(in_channels: int, width_mult: float, stride: int) -> nn.Sequential:
    """3x3 conv (stride 2 on ImageNet) to 32 channels, BN, ReLU, then the DS block: 3x3 depthwise,
    BN, ReLU, 1x1 conv to 16, BN (no residual, no SE: the release's ``ds_r1_k3_s1_e1_c16``)."""
    C_stem, C_ds = scaled(STEM_CHANNELS, width_mult), scaled(DS_CHANNELS, width_mult)
    return nn.Sequential(
        nn.Conv2d(in_channels, C_stem, 3, stride, 1, bias=False), bn(C_stem), nn.ReLU(),
        nn.Conv2d(C_stem, C_stem, 3, 1, 1, groups=C_stem, bias=False), bn(C_stem), nn.ReLU(),
        nn.Conv2d(C_stem, C_ds, 1, bias=False), bn(C_ds))


def head(width_mult: float) -> nn.Sequential:
    """1x1 conv from the last layer to 1280 channels, BN, ReLU, global average pooling."""
    C_last, C_head = scaled(WIDTHS[-1], width_mult), head_channels(width_mult)
    return nn.Sequential(nn.Conv2d(C_last, C_head, 1, bias=False), bn(C_head), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def init_weights(model: nn.Module) -> None:
    """MobileNetV2's initialization (as torchvision's): He normal (fan out) convs, zero biases,
    unit BN, N(0, 0.01) classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)

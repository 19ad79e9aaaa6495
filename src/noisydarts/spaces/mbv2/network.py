"""The stand-alone network of a layer-wise genotype (NoisyDARTS-A and its kin).

The skeleton of :mod:`.blocks` with each searchable layer replaced by its chosen block: an
MBConv (affine BN, running statistics) or the identity. Options, as the release builds
NoisyDARTS-A (``verify_se.py``, a timm EfficientNet):

* ``se``: squeeze-and-excitation in every MBConv, ``se`` x the block's input channels (0 = none);
* ``activation``: ``relu`` or ``swish`` in the 19 searched blocks (stem, DS block and head: ReLU);
* ``dropout`` before the classifier; drop-connect on the MBConv residual branches, growing
  linearly with depth to ``drop_path_prob`` at the last layer (EfficientNet), which the trainer
  sets (and ramps over the epochs, as for every space);
* ``stem_stride`` 2 for ImageNet at 224 px (7x7 before pooling), 1 for 32x32 images (2x2).

In training and eval mode it returns logits (no auxiliary head).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import IDENTITY, INPUTS, NUM_LAYERS, STRIDES, WIDTHS, Identity, MBConv, head, init_weights, mbconv_shape, scaled, stem
from .genotype import LayerwiseGenotype


class MBV2Network(nn.Module):
    def __init__(self, genotype: LayerwiseGenotype, num_classes: int, width_mult: float = 1.0, se: float = 0.0,
                 activation: str = "relu", dropout: float = 0.0, stem_stride: int = 2, in_channels: int = 3):
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = 0.0
        self.stem = stem(in_channels, width_mult, stem_stride)
        layers = []
        for i, choice in enumerate(genotype.layers):
            if choice == IDENTITY:
                layers.append(Identity())
                continue
            C_in, C_out = scaled(INPUTS[i], width_mult), scaled(WIDTHS[i], width_mult)
            e, k = mbconv_shape(choice)
            residual = STRIDES[i] == 1 and INPUTS[i] == WIDTHS[i]
            layers.append(MBConv(C_in, C_out, e, k, STRIDES[i], residual=residual, se_ratio=se, activation=activation))
        self.layers = nn.ModuleList(layers)
        self.head = head(width_mult)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(self.head[0].out_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, self.drop_path_prob * (i + 1) / NUM_LAYERS)
        return self.classifier(self.dropout(self.head(x)))

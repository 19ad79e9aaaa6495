"""The auxiliary classifier tower of the DARTS evaluation network, for use during search.

Amended-DARTS (Sec. 4.1.2) adds an auxiliary loss tower to the search stage so that search and
re-training train the same way. Layout as in DARTS' CIFAR evaluation network: ReLU, 5x5 average
pooling with stride 3 (8x8 -> 2x2 at 32x32 input), 1x1 conv to 128, BN, ReLU, 2x2 conv to 768,
BN, ReLU, linear. Here the pooling is adaptive to a 2x2 output, so any input resolution works
(at 8x8 it averages 4x4 windows instead of overlapping 5x5 ones).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class AuxiliaryHead(nn.Module):
    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))

"""CIFAR ResNets of the host zoo (resnet8 ... resnet110, resnet8x4, resnet32x4).

Three stages of basic blocks on 32x32 inputs; the "x4" variants are wider (32-64-128-256)
and begin with a projection shortcut in the first block. Parameter names and shapes follow
the host so that its teacher checkpoints load unchanged.
"""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import BasicBlock, Stage, init_weights, pooled, run_stages


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: List[int], num_classes: int = 100) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.widths = widths
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._stage(widths[0], widths[1], n, 1)
        self.layer2 = self._stage(widths[1], widths[2], n, 2)
        self.layer3 = self._stage(widths[2], widths[3], n, 2)
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self, conv="kaiming")

    @staticmethod
    def _stage(cin: int, cout: int, blocks: int, stride: int) -> Stage:
        return Stage(*[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks)])

    def get_stage_channels(self) -> List[int]:
        return list(self.widths)

    def forward(self, x: torch.Tensor):
        f0 = F.relu(self.bn1(self.conv1(x)))
        feats, preacts = [f0], [f0]
        p = pooled(run_stages(f0, (self.layer1, self.layer2, self.layer3), feats, preacts), window=8)  # the host's AvgPool2d(8)
        return self.fc(p), {"feats": feats, "preact_feats": preacts, "pooled_feat": p}


_NARROW = [16, 16, 32, 64]
_WIDE = [32, 64, 128, 256]


def resnet8(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(8, _NARROW, num_classes)


def resnet14(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(14, _NARROW, num_classes)


def resnet20(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(20, _NARROW, num_classes)


def resnet32(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(32, _NARROW, num_classes)


def resnet44(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(44, _NARROW, num_classes)


def resnet56(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(56, _NARROW, num_classes)


def resnet110(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(110, _NARROW, num_classes)


def resnet8x4(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(8, _WIDE, num_classes)


def resnet32x4(num_classes: int = 100) -> CifarResNet:
    return CifarResNet(32, _WIDE, num_classes)

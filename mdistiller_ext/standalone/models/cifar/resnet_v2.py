"""ResNet18 / ResNet50 for 32x32 inputs (3x3 stem, four stages, no max-pool)."""
from typing import List, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .resnet import _init_conv_bn


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out)) + self.shortcut(x)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential:
    if stride == 1 and cin == cout:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class CifarResNetV2(nn.Module):
    def __init__(self, block: Type[Union[_Basic, _Bottleneck]], blocks: List[int], num_classes: int = 100) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        stages = []
        for i, (planes, n) in enumerate(zip([64, 128, 256, 512], blocks)):
            layers = []
            for j in range(n):
                layers.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(cin, num_classes)
        _init_conv_bn(self)

    def get_stage_channels(self) -> List[int]:
        # the host reports bottleneck widths for every depth; kept for compatibility
        return [256, 512, 1024, 2048]

    def forward(self, x: torch.Tensor):
        f0 = F.relu(self.bn1(self.conv1(x)))
        feats, preacts = [f0], [f0]
        out = f0
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            pre = stage(out)
            out = F.relu(pre)
            preacts.append(pre)
            feats.append(out)
        pooled = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(pooled), {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def ResNet18(num_classes: int = 100) -> CifarResNetV2:
    return CifarResNetV2(_Basic, [2, 2, 2, 2], num_classes)


def ResNet50(num_classes: int = 100) -> CifarResNetV2:
    return CifarResNetV2(_Bottleneck, [3, 4, 6, 3], num_classes)

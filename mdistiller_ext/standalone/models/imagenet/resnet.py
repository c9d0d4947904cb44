"""ImageNet ResNet18/34/50/101 with torchvision's parameter layout and the host's outputs."""
from typing import List, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..cifar.resnet import _init_conv_bn


def _downsample(cin: int, cout: int, stride: int):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return out + (x if self.downsample is None else self.downsample(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _downsample(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + (x if self.downsample is None else self.downsample(x))


class ImageNetResNet(nn.Module):
    def __init__(self, block: Type[Union[_Basic, _Bottleneck]], blocks: List[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
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
        self.fc = nn.Linear(cin, num_classes)
        self.expansion = block.expansion
        _init_conv_bn(self)

    def get_stage_channels(self) -> List[int]:
        return [c * self.expansion for c in (64, 128, 256, 512)]

    def forward(self, x: torch.Tensor):
        f0 = F.relu(self.bn1(self.conv1(x)))
        out = F.max_pool2d(f0, 3, 2, 1)
        feats, preacts = [f0], [f0]
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            pre = stage(out)
            out = F.relu(pre)
            preacts.append(pre)
            feats.append(out)
        pooled = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(pooled), {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def _no_pretrained(pretrained: bool) -> None:
    if pretrained:
        raise RuntimeError(
            "pretrained ImageNet weights are downloaded by mdistiller/torchvision; without mdistiller, "
            "set EXT.TEACHER_CKPT to a local checkpoint instead"
        )


def ResNet18(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    _no_pretrained(pretrained)
    return ImageNetResNet(_Basic, [2, 2, 2, 2], num_classes)


def ResNet34(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    _no_pretrained(pretrained)
    return ImageNetResNet(_Basic, [3, 4, 6, 3], num_classes)


def ResNet50(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    _no_pretrained(pretrained)
    return ImageNetResNet(_Bottleneck, [3, 4, 6, 3], num_classes)


def ResNet101(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    _no_pretrained(pretrained)
    return ImageNetResNet(_Bottleneck, [3, 4, 23, 3], num_classes)

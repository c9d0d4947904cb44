"""ImageNet ResNet18/34/50/101 with torchvision's parameter layout and the host's outputs."""
from typing import List, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import BasicBlock, Bottleneck, init_weights, make_stages, pooled, refuse_pretrained, run_stages


class ImageNetResNet(nn.Module):
    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], blocks: List[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, cin = make_stages(block, [64, 128, 256, 512], blocks, 64, 1, "downsample")
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(cin, num_classes)
        self.expansion = block.expansion
        init_weights(self, conv="sqrt2n")

    def get_stage_channels(self) -> List[int]:
        return [c * self.expansion for c in (64, 128, 256, 512)]

    def forward(self, x: torch.Tensor):
        f0 = F.relu(self.bn1(self.conv1(x)))
        # the host's stem "pre-activation" is ReLU'd in place before it is returned: both views are f0
        feats, preacts = [f0], [f0]
        p = pooled(run_stages(F.max_pool2d(f0, 3, 2, 1), (self.layer1, self.layer2, self.layer3, self.layer4), feats, preacts),
                   window=7)  # the host's AvgPool2d(7): 224-pixel inputs, as the host
        return self.fc(p), {"feats": feats, "preact_feats": preacts, "pooled_feat": p}


def ResNet18(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    refuse_pretrained(pretrained)
    return ImageNetResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def ResNet34(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    refuse_pretrained(pretrained)
    return ImageNetResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def ResNet50(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    refuse_pretrained(pretrained)
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes)


def ResNet101(pretrained: bool = False, num_classes: int = 1000) -> ImageNetResNet:
    refuse_pretrained(pretrained)
    return ImageNetResNet(Bottleneck, [3, 4, 23, 3], num_classes)

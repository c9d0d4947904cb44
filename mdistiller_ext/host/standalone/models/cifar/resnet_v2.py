"""ResNet18 / ResNet50 for 32x32 inputs (3x3 stem, four stages, no max-pool)."""
from typing import List, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import BasicBlock, Bottleneck, init_weights, make_stages, pooled, run_stages


class CifarResNetV2(nn.Module):
    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], blocks: List[int], num_classes: int = 100) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, cin = make_stages(block, [64, 128, 256, 512], blocks, 64, 1, "shortcut")
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(cin, num_classes)
        init_weights(self, conv="kaiming")

    def get_stage_channels(self) -> List[int]:
        # the host reports bottleneck widths for every depth; kept for compatibility
        return [256, 512, 1024, 2048]

    def forward(self, x: torch.Tensor):
        f0 = F.relu(self.bn1(self.conv1(x)))
        feats, preacts = [f0], [f0]
        p = pooled(run_stages(f0, (self.layer1, self.layer2, self.layer3, self.layer4), feats, preacts))
        return self.linear(p), {"feats": feats, "preact_feats": preacts, "pooled_feat": p}


def ResNet18(num_classes: int = 100) -> CifarResNetV2:
    return CifarResNetV2(BasicBlock, [2, 2, 2, 2], num_classes)


def ResNet50(num_classes: int = 100) -> CifarResNetV2:
    return CifarResNetV2(Bottleneck, [3, 4, 6, 3], num_classes)

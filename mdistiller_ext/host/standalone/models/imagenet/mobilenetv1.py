"""MobileNetV1 for ImageNet with the host's parameter layout (``model.N`` sequential)."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import pooled as pool, refuse_pretrained

# (output channels, stride) of the 13 depthwise-separable units
_UNITS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class MobileNetV1Net(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))]
        cin = 32
        for cout, stride in _UNITS:
            layers.append(_conv_dw(cin, cout, stride))
            cin = cout
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, num_classes)
        self.stage_ends = [3, 5, 11, 13]

    def get_stage_channels(self) -> List[int]:
        return [128, 256, 512, 1024]

    def forward(self, x: torch.Tensor):
        out = x
        feats, preacts = [], []
        start = 0
        for end in self.stage_ends:
            out = self.model[start:end](out)
            last = self.model[end]
            pre = last[:-1](out)
            out = F.relu(pre)
            preacts.append(pre)
            feats.append(out)
            start = end + 1
        pooled = pool(out, window=7)  # the host's AvgPool2d(7) at its 224-pixel inputs (its bits)
        return self.fc(pooled), {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def MobileNetV1(pretrained: bool = False, num_classes: int = 1000) -> MobileNetV1Net:
    refuse_pretrained(pretrained)
    return MobileNetV1Net(num_classes)

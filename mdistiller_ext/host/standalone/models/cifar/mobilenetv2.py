"""MobileNetV2 of the host zoo for CIFAR (expansion 6, width 0.5, stride-2 stem)."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import init_weights



def _conv_bn(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res else out


# (expansion, channels at width 1.0, repeats, first stride); CIFAR keeps stage 2 at stride 1
_SETTING = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
            (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]


class MobileNetV2Cifar(nn.Module):
    def __init__(self, expand: int = 6, width: float = 0.5, num_classes: int = 100) -> None:
        super().__init__()
        cin = int(32 * width)
        self.conv1 = _conv_bn(3, cin, 3, 2)
        blocks = []
        for t, c, n, s in _SETTING:
            cout = int(c * width)
            layers = []
            for i in range(n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t or expand))
                cin = cout
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.last_channel = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = _conv_bn(cin, self.last_channel, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        self.stage_ends = [1, 2, 4, 6]
        init_weights(self, conv="sqrt2n", linear="small")

    def get_stage_channels(self) -> List[int]:
        return [self.conv1[0].out_channels] + [self.blocks[i][-1].conv[-1].num_features for i in self.stage_ends]

    def forward(self, x: torch.Tensor):
        out = self.conv1(x)
        feats = [out]
        for i, block in enumerate(self.blocks):
            out = block(out)
            if i in self.stage_ends:
                feats.append(out)
        out = self.conv2(out)
        pooled = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        # the host's MobileNetV2 exposes no pre-activation features
        return self.classifier(pooled), {"feats": feats, "pooled_feat": pooled}


def MobileNetV2(num_classes: int = 100) -> MobileNetV2Cifar:
    return MobileNetV2Cifar(6, 0.5, num_classes)

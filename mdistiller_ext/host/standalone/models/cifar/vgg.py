"""VGG-BN networks of the host zoo (vgg8/11/13/16/19) for 32x32 inputs."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import init_weights


# convolutions per stage; five stages of widths 64-128-256-512-512
_DEPTHS = {"vgg8": [1, 1, 1, 1, 1], "vgg11": [1, 1, 2, 2, 2], "vgg13": [2, 2, 2, 2, 2],
           "vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}
_WIDTHS = [64, 128, 256, 512, 512]


def _stage(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    # the trailing ReLU is applied in forward so the pre-activation stays observable
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    def __init__(self, depths: List[int], num_classes: int = 100) -> None:
        super().__init__()
        cin = 3
        for i, (w, n) in enumerate(zip(_WIDTHS, depths)):
            setattr(self, f"block{i}", _stage(cin, w, n))
            cin = w
        self.classifier = nn.Linear(512, num_classes)
        init_weights(self, conv="sqrt2n", linear="small")

    def get_stage_channels(self) -> List[int]:
        return list(_WIDTHS)

    def forward(self, x: torch.Tensor):
        size = x.shape[2]
        feats, preacts = [], []
        out = x
        for i in range(5):
            # 32x32 inputs skip the fourth pooling (the host does the same)
            if i in (1, 2, 3) or (i == 4 and size == 64):
                out = F.max_pool2d(out, 2)
            pre = getattr(self, f"block{i}")(out)
            out = F.relu(pre)
            preacts.append(pre if i > 0 else out)
            feats.append(out)
        pooled = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.classifier(pooled), {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def vgg8(num_classes: int = 100) -> VGG:
    return VGG(_DEPTHS["vgg8"], num_classes)


def vgg11(num_classes: int = 100) -> VGG:
    return VGG(_DEPTHS["vgg11"], num_classes)


def vgg13(num_classes: int = 100) -> VGG:
    return VGG(_DEPTHS["vgg13"], num_classes)


def vgg16(num_classes: int = 100) -> VGG:
    return VGG(_DEPTHS["vgg16"], num_classes)


def vgg19(num_classes: int = 100) -> VGG:
    return VGG(_DEPTHS["vgg19"], num_classes)

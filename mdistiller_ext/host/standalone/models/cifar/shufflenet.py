"""ShuffleNet V1 (groups 3) and V2 (width 1.0) of the host zoo for CIFAR."""
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.host.standalone.models.blocks import Stage, pooled, run_stages


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class _V1Unit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        branch_out = cout - cin if stride == 2 else cout
        mid = branch_out // 4
        # the stem output (24 channels) is too narrow to split into groups
        self.g1 = 1 if cin == 24 else groups
        self.groups = groups
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=self.g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.g1)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1)
        return out + x


class ShuffleNetV1(nn.Module):
    def __init__(self, widths: List[int], blocks: List[int], groups: int, num_classes: int = 100) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        layers = []
        for w, n in zip(widths, blocks):
            units = [_V1Unit(cin if i == 0 else w, w, 2 if i == 0 else 1, groups) for i in range(n)]
            layers.append(Stage(*units))
            cin = w
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor):
        out = F.relu(self.bn1(self.conv1(x)))
        feats, preacts = [out], [out]
        p = pooled(run_stages(out, (self.layer1, self.layer2, self.layer3), feats, preacts), window=4)  # the host's window
        return self.linear(p), {"feats": feats, "preact_feats": preacts, "pooled_feat": p}


class _V2Basic(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        c = cin // 2
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward_with_preact(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(output, pre-activation); the host's pre-activation is [kept half, BN output], unshuffled."""
        keep, work = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(work)))
        out = self.bn2(self.conv2(out))
        pre = self.bn3(self.conv3(out))
        return channel_shuffle(torch.cat([keep, F.relu(pre)], 1), 2), torch.cat([keep, pre], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preact(x)[0]


class _V2Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.conv1 = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths: List[int], blocks: List[int], last: int, num_classes: int = 100) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        layers = []
        for w, n in zip(widths, blocks):
            layers.append(nn.Sequential(_V2Down(cin, w), *[_V2Basic(w) for _ in range(n)]))
            cin = w
        self.layer1, self.layer2, self.layer3 = layers
        self.widths = widths
        self.conv2 = nn.Conv2d(cin, last, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(last)
        self.linear = nn.Linear(last, num_classes)

    def get_stage_channels(self) -> List[int]:
        return [24] + list(self.widths)

    def forward(self, x: torch.Tensor):
        out = F.relu(self.bn1(self.conv1(x)))
        feats, preacts = [out], [out]
        for layer in (self.layer1, self.layer2, self.layer3):
            for unit in layer[:-1]:
                out = unit(out)
            out, pre = layer[-1].forward_with_preact(out)
            feats.append(out)
            preacts.append(pre)
        p = pooled(F.relu(self.bn2(self.conv2(out))), window=4)  # the host's window
        return self.linear(p), {"feats": feats, "preact_feats": preacts, "pooled_feat": p}


def ShuffleV1(num_classes: int = 100) -> ShuffleNetV1:
    return ShuffleNetV1([240, 480, 960], [4, 8, 4], 3, num_classes)


def ShuffleV2(num_classes: int = 100) -> ShuffleNetV2:
    # each stage is one downsampling unit followed by 3/7/3 basic units
    return ShuffleNetV2([116, 232, 464], [3, 7, 3], 1024, num_classes)

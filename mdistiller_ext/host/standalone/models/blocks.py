"""Residual blocks and the stage loop shared by the zoo's ResNet-style models.

The shortcut projection is stored under a caller-given attribute name ("downsample" in the
host's CIFAR/ImageNet ResNets, "shortcut" in its ResNet18/50 for CIFAR), which is what the
state_dict keys follow.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def init_linear(m: nn.Linear, rule: str) -> None:
    """The host's rules for linear layers: ``default`` keeps PyTorch's, ``small`` is N(0, 0.01) with zero
    bias (VGG, MobileNetV2), ``zero_bias`` zeroes only the bias (WRN)."""
    if rule == "small":
        m.weight.data.normal_(0, 0.01)
    if rule in ("small", "zero_bias") and m.bias is not None:
        m.bias.data.zero_()


def init_weights(model: nn.Module, conv: str, linear: str = "default") -> None:
    """The host's init loop over ``model.modules()`` in order (so the random draws match it too).

    conv ``kaiming``: kaiming_normal_(fan_out, relu) (the CIFAR ResNets); ``sqrt2n``: N(0, sqrt(2/n)),
    n = k*k*out_channels, and zero conv bias (VGG, MobileNetV2, WRN, ImageNet ResNets). BatchNorm2d and
    GroupNorm: weight 1, bias 0. Linear: ``init_linear``'s rule.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if conv == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
                if m.bias is not None:
                    m.bias.data.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            init_linear(m, linear)


def _projection(cin: int, cout: int, stride: int):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class _Residual(nn.Module):
    def _set_shortcut(self, name: str, cin: int, cout: int, stride: int) -> None:
        self._shortcut_name = name
        setattr(self, name, _projection(cin, cout, stride))

    def _identity(self, x: torch.Tensor) -> torch.Tensor:
        proj = getattr(self, self._shortcut_name)
        return x if proj is None else proj(x)


class BasicBlock(_Residual):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut; returns the sum before the final ReLU."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "downsample") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self._set_shortcut(shortcut, cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return out + self._identity(x)


class Bottleneck(_Residual):
    """1x1-3x3(stride)-1x1 with expansion 4; returns the sum before the final ReLU."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "downsample") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self._set_shortcut(shortcut, cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out)) + self._identity(x)


class Stage(nn.Sequential):
    """Blocks return pre-activations; a ReLU runs between consecutive blocks (the host's semantics:
    every block but a stage's last ends in a ReLU), and the stage returns its last pre-activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self):
            x = block(F.relu(x) if i else x)
        return x


def make_stages(block, widths: Sequence[int], blocks: Sequence[int], cin: int, first_stride: int,
                shortcut: str) -> Tuple[List[Stage], int]:
    """Stages of ``block``; every stage but the first starts with stride 2."""
    stages = []
    for i, (planes, n) in enumerate(zip(widths, blocks)):
        layers = []
        for j in range(n):
            stride = (first_stride if i == 0 else 2) if j == 0 else 1
            layers.append(block(cin, planes, stride, shortcut))
            cin = planes * block.expansion
        stages.append(Stage(*layers))
    return stages, cin


def run_stages(x: torch.Tensor, stages: Sequence[nn.Module], feats: List[torch.Tensor],
               preacts: List[torch.Tensor]) -> torch.Tensor:
    """Apply stages whose outputs are pre-activations; record both views of each, return the last activation."""
    for stage in stages:
        pre = stage(x)
        x = F.relu(pre)
        preacts.append(pre)
        feats.append(x)
    return x


def pooled(x: torch.Tensor, window: int = 0) -> torch.Tensor:
    """Global average pooling, flattened. ``window``: the host's fixed avg_pool2d window, used where the map
    is exactly that size (the host's input size), so the zoo computes the host's bits (the adaptive pool sums
    in another order); other sizes, which the host's models refuse, pool adaptively."""
    fixed = window and x.shape[-2] == window and x.shape[-1] == window
    return torch.flatten(F.avg_pool2d(x, window) if fixed else F.adaptive_avg_pool2d(x, 1), 1)


def refuse_pretrained(pretrained: bool) -> None:
    """The stand-in zoo has no pretrained weights (mdistiller takes them from torchvision)."""
    if pretrained:
        raise RuntimeError(
            "pretrained ImageNet weights are downloaded by mdistiller/torchvision; without mdistiller, "
            "set EXT.TEACHER_CKPT to a local checkpoint instead"
        )

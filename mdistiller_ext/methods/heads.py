"""Trainable modules that methods add beside the student: DHKD's auxiliary head and AEKT's
task-serialization layer."""
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from mdistiller_ext.host.standalone.models.blocks import init_linear

# the rule each zoo student's own init loop applies to its linear layers, by the student's class (the
# host's and the stand-in's names); DHKD's authors put the auxiliary head inside the student, so it got
# the same rule
STUDENT_LINEAR_INIT = (("VGG", "small"), ("MobileNetV2", "small"), ("WideResNet", "zero_bias"))


def student_linear_rule(student: nn.Module) -> str:
    name = type(student).__name__
    return next((rule for prefix, rule in STUDENT_LINEAR_INIT if name.startswith(prefix)), "default")


# DHKD.HEAD_INIT -> the init rule of the head's linear layers, given the student
HEAD_INITS: Dict[str, Callable[[nn.Module], str]] = {"student": student_linear_rule, "default": lambda student: "default"}


def _linear_head(in_dim: int, num_classes: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Linear(in_dim, num_classes)


def _nonlinear_head(in_dim: int, num_classes: int, hidden: int, dropout: float) -> nn.Module:
    # the authors' layer order: dropout before batch norm
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Dropout(dropout), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, num_classes))


# DHKD.HEAD -> the auxiliary head's builder; none builds no head (the logit loss goes on the main head)
HEAD_TYPES: Dict[str, Optional[Callable[..., nn.Module]]] = {"linear": _linear_head, "nonlinear": _nonlinear_head,
                                                              "none": None}


class AuxiliaryHead(nn.Module):
    """DHKD's second classifier on the student's pooled feature (training only).

    linear: Linear(D, C). nonlinear: Linear(D, H) -> Dropout(p) -> BatchNorm1d(H) -> ReLU -> Linear(H, C).
    """

    def __init__(self, in_dim: int, num_classes: int, kind: str = "linear", hidden: int = 200, dropout: float = 0.1,
                 linear_init: str = "default") -> None:
        super().__init__()
        build = HEAD_TYPES.get(kind)
        if build is None:
            heads = ", ".join(k for k, v in HEAD_TYPES.items() if v is not None)
            raise ValueError(f"auxiliary head type {kind!r} is not one of {heads} "
                             f"(DHKD.HEAD takes {', '.join(HEAD_TYPES)}: none builds no head)")
        self.net = build(in_dim, num_classes, hidden, dropout)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_linear(m, linear_init)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


def classifier_of(student: nn.Module) -> nn.Linear:
    """The student's final linear layer (its input is feats["pooled_feat"] in every host model)."""
    linears = [m for m in student.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(student).__name__} has no linear classifier to attach a head beside")
    return linears[-1]


class SerializationLayer(nn.Module):
    """AEKT's C x C task-serialization layer z -> z W^T + b, identity at initialisation.

    With ``decay_to_identity`` the trainable tensor is ``delta = W - I`` so that the optimizer's
    ordinary weight decay pulls W towards the identity rather than towards zero.
    """

    def __init__(self, num_classes: int, decay_to_identity: bool = True) -> None:
        super().__init__()
        self.decay_to_identity = decay_to_identity
        self.register_buffer("eye", torch.eye(num_classes), persistent=False)
        if decay_to_identity:
            self.delta = nn.Parameter(torch.zeros(num_classes, num_classes))
        else:
            self.weight = nn.Parameter(torch.eye(num_classes))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def matrix(self) -> torch.Tensor:
        return self.eye + self.delta if self.decay_to_identity else self.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # in fp32 whatever autocast says: W = I + delta cast to bf16 (a step of 2^-7 near 1.0) would round a
        # learned delta of a few 1e-3 away and leave the layer exactly the identity; in fp32 nothing changes
        with torch.autocast(z.device.type, enabled=False):
            return nn.functional.linear(z.float(), self.matrix().float(), self.bias.float())


class SerializedStudent(nn.Module):
    """A student whose deployed output passes through a serialization layer (AEKT kd_then_cls).

    Keeps the host's model contract: forward returns (logits, feats); the logits before the
    layer are exposed as feats["pre_serial_logits"].
    """

    def __init__(self, net: nn.Module, serial: SerializationLayer) -> None:
        super().__init__()
        self.net = net
        self.serial = serial

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict]:
        logits, feats = self.net(x)
        feats = dict(feats)
        feats["pre_serial_logits"] = logits
        return self.serial(logits), feats

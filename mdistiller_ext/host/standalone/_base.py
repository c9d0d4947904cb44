"""The host's ``Distiller`` contract, for use without mdistiller (same names, same behaviour)."""
from typing import Dict, Iterable, Tuple

import torch
import torch.nn as nn


class _StudentTrainer(nn.Module):
    """What the host's Distiller and Vanilla share: the student, its parameters, the test path."""

    def get_learnable_parameters(self) -> Iterable[nn.Parameter]:
        return [p for _, p in self.student.named_parameters()]

    def get_extra_parameters(self) -> int:
        return 0

    def forward_test(self, image: torch.Tensor) -> torch.Tensor:
        return self.student(image)[0]

    def forward(self, **kwargs):
        if self.training:
            return self.forward_train(**kwargs)
        return self.forward_test(kwargs["image"])


class Distiller(_StudentTrainer):
    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher

    def train(self, mode: bool = True) -> "Distiller":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        self.teacher.eval()
        return self

    def forward_train(self, **kwargs) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        raise NotImplementedError()


class Vanilla(_StudentTrainer):
    """Plain supervised training of one network (DISTILLER.TYPE NONE)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs):
        logits, _ = self.student(image)
        return logits, {"ce": nn.functional.cross_entropy(logits, target)}

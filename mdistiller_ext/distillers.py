"""Distillers: DHKD and AEKT (this project's methods) and the KD/DKD baselines used without mdistiller.

All follow the host's contract: constructed as ``cls(student, teacher, cfg)``, ``forward_train``
returns ``(logits, {"loss_ce": ..., "loss_kd": ...})`` (only real losses: trainers sum the dict),
``forward_test`` returns the deployed logits.
"""
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode

from . import losses
from .heads import AuxiliaryHead, SerializationLayer, SerializedStudent, classifier_of, student_linear_rule
from .host import Distiller

Output = Tuple[torch.Tensor, Dict[str, torch.Tensor]]


def warmup_factor(epoch: int, warmup: float) -> float:
    """min(epoch / warmup, 1); no warm-up when warmup <= 0."""
    return 1.0 if warmup <= 0 else min(float(epoch) / float(warmup), 1.0)


def _teacher_logits(teacher: nn.Module, image: torch.Tensor) -> torch.Tensor:
    # inference_mode skips autograd bookkeeping; the clone makes the result usable in the losses' graph
    with torch.inference_mode():
        logits = teacher(image)[0]
    return logits.clone()


class KD(Distiller):
    """Hinton KD, as the host's KD distiller (CE_WEIGHT * CE + KD_WEIGHT * T^2 KL)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode) -> None:
        super().__init__(student, teacher)
        self.temperature = cfg.KD.TEMPERATURE
        self.ce_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_weight = cfg.KD.LOSS.KD_WEIGHT

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, _ = self.student(image)
        z_t = _teacher_logits(self.teacher, image)
        return logits, {
            "loss_ce": self.ce_weight * F.cross_entropy(logits, target),
            "loss_kd": self.kd_weight * losses.kd_loss(logits, z_t, self.temperature),
        }


class DKD(Distiller):
    """Decoupled KD, as the host's DKD distiller, with the warm-up min(epoch/WARMUP, 1)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode) -> None:
        super().__init__(student, teacher)
        self.c = cfg.DKD

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, _ = self.student(image)
        z_t = _teacher_logits(self.teacher, image)
        kd = losses.dkd_loss(logits, z_t, target, self.c.ALPHA, self.c.BETA, self.c.T)
        return logits, {
            "loss_ce": self.c.CE_WEIGHT * F.cross_entropy(logits, target),
            "loss_kd": warmup_factor(kwargs.get("epoch", 1), self.c.WARMUP) * kd,
        }


class DHKD(Distiller):
    """Dual-Head KD: CE on the student's own head, BinaryKL-Norm on an auxiliary head.

    Both heads read feats["pooled_feat"]; the auxiliary head is owned here (not by the student),
    so ``student.state_dict()`` stays the plain student's and test time uses the main head.
    DHKD.HEAD none puts the logit-level loss on the main head (the paper's collapse ablation).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode) -> None:
        super().__init__(student, teacher)
        self.c = cfg.DHKD
        fc = classifier_of(student)
        self.num_classes = fc.out_features
        self.aux_head = None
        if self.c.HEAD != "none":
            rule = student_linear_rule(student) if self.c.HEAD_INIT == "student" else "default"
            self.aux_head = AuxiliaryHead(fc.in_features, fc.out_features, self.c.HEAD, self.c.HIDDEN, self.c.DROPOUT, rule)
        self.logit_loss = losses.LOGIT_LOSSES[self.c.LOSS]

    def get_learnable_parameters(self) -> List[nn.Parameter]:
        extra = list(self.aux_head.parameters()) if self.aux_head is not None else []
        return super().get_learnable_parameters() + extra

    def get_extra_parameters(self) -> int:
        return 0 if self.aux_head is None else sum(p.numel() for p in self.aux_head.parameters())

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, feats = self.student(image)
        z_t = _teacher_logits(self.teacher, image)
        z_aux = logits if self.aux_head is None else self.aux_head(feats["pooled_feat"])
        epoch = kwargs.get("epoch", 1)
        alpha = 0.0 if (self.c.KD_OFF_EPOCH > 0 and epoch >= self.c.KD_OFF_EPOCH) else self.c.ALPHA
        loss_kd = alpha * self.logit_loss(z_aux, z_t, self.c.T)
        if self.c.MAIN_KD_WEIGHT > 0:
            loss_kd = loss_kd + self.c.MAIN_KD_WEIGHT * losses.kd_loss(logits, z_t, self.c.MAIN_KD_T)
        return logits, {"loss_ce": self.c.CE_WEIGHT * F.cross_entropy(logits, target), "loss_kd": loss_kd}

    def forward_test_heads(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every head's logits at test time (logged beside the main accuracy)."""
        logits, feats = self.student(image)
        heads = {"main": logits}
        if self.aux_head is not None:
            heads["aux"] = self.aux_head(feats["pooled_feat"])
        return heads


class AEKT(Distiller):
    """Adaptive Explicit Knowledge Transfer (the project's reconstruction; see the README).

    SERIAL cls_then_kd: student logits z_cls take CE and are deployed, S(z_cls) takes AEKT.
    SERIAL kd_then_cls: student logits take AEKT, S(.) takes CE and is deployed, so S becomes
    part of the student (``SerializedStudent``) and is saved in its checkpoints.
    SERIAL none: one head takes both losses.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode) -> None:
        c = cfg.AEKT
        num_classes = classifier_of(student).out_features
        serial = None
        if c.SERIAL != "none":
            serial = SerializationLayer(num_classes, decay_to_identity=c.SERIAL_DECAY == "identity")
        if c.SERIAL == "kd_then_cls":
            student = SerializedStudent(student, serial)
        super().__init__(student, teacher)
        self.c = c
        self.serial_mode = c.SERIAL
        self.serial = serial if c.SERIAL == "cls_then_kd" else None
        self.num_classes = num_classes

    def serialization_layer(self):
        if self.serial_mode == "kd_then_cls":
            return self.student.serial
        return self.serial

    def get_learnable_parameters(self) -> List[nn.Parameter]:
        extra = list(self.serial.parameters()) if self.serial is not None else []
        return super().get_learnable_parameters() + extra

    def get_extra_parameters(self) -> int:
        # in kd_then_cls the layer is part of the deployed student, not an extra
        return 0 if self.serial is None else sum(p.numel() for p in self.serial.parameters())

    def _heads(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits, feats = self.student(image)
        if self.serial_mode == "cls_then_kd":
            return logits, self.serial(logits)
        if self.serial_mode == "kd_then_cls":
            return logits, feats["pre_serial_logits"]
        return logits, logits

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        z_cls, z_kd = self._heads(image)
        z_t = _teacher_logits(self.teacher, image)
        c = self.c
        kd = losses.aekt_loss(z_kd, z_t, target, c.ALPHA, c.BETA, c.T, c.RATIO_MODE, c.W_MAX, c.RATIO_NORM, c.RATIO_T)
        return z_cls, {
            "loss_ce": c.CE_WEIGHT * F.cross_entropy(z_cls, target),
            "loss_kd": warmup_factor(kwargs.get("epoch", 1), c.WARMUP) * kd,
        }

    def forward_test_heads(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        z_cls, z_kd = self._heads(image)
        return {"main": z_cls, "kd": z_kd} if self.serial_mode != "none" else {"main": z_cls}


METHODS = {"DHKD": DHKD, "AEKT": AEKT}
STANDALONE_BASELINES = {"KD": KD, "DKD": DKD}

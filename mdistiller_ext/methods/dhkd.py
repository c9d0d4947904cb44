"""DHKD, Dual-Head Knowledge Distillation: CE on the student's own head, BinaryKL-Norm on an auxiliary
head beside it (docs/methods/dhkd.md); its config node, rules, recipe and ablations."""
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from mdistiller_ext.methods import losses
from mdistiller_ext.methods.heads import HEAD_INITS, HEAD_TYPES, AuxiliaryHead, classifier_of
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE, POSITIVE_INT, in_unit_interval, integer_at_least, one_of
from mdistiller_ext.methods.base import Distiller, Output, teacher_logits


def node() -> CN:
    n = CN()
    n.CE_WEIGHT = 1.0          # gamma: CE on the main head
    n.ALPHA = 1.0              # weight of the logit-level loss (0.1 on ImageNet)
    n.T = 2.0                  # tau
    n.LOSS = "bkl_norm"        # bkl_norm | bkl: logit-level loss on the auxiliary head
    n.HEAD = "linear"          # linear | nonlinear | none (none: the loss goes on the main head)
    n.HIDDEN = 200             # nonlinear head width
    n.DROPOUT = 0.1            # nonlinear head dropout (before BatchNorm)
    n.HEAD_INIT = "student"    # student: the student's own rule for linear layers (as inside the student); default: PyTorch's
    n.KD_OFF_EPOCH = 0         # switch the logit loss off from this epoch on (0: never; 50 on ImageNet)
    n.MAIN_KD_WEIGHT = 0.0     # optional softmax-KD on the main head (0: off, as in the paper)
    n.MAIN_KD_T = 4.0
    return n


RULES = (
    ("DHKD.T", POSITIVE),
    ("DHKD.ALPHA", NON_NEGATIVE),
    ("DHKD.CE_WEIGHT", NON_NEGATIVE),
    ("DHKD.LOSS", one_of(losses.LOGIT_LOSSES)),
    ("DHKD.HEAD", one_of(HEAD_TYPES)),
    ("DHKD.HIDDEN", POSITIVE_INT),
    ("DHKD.HEAD_INIT", one_of(HEAD_INITS)),
    ("DHKD.DROPOUT", in_unit_interval()),
    ("DHKD.KD_OFF_EPOCH", integer_at_least(0, "0: never")),
    ("DHKD.MAIN_KD_WEIGHT", NON_NEGATIVE),
    ("DHKD.MAIN_KD_T", POSITIVE),
)


def recipe(dataset: str, pair_name: str, pair) -> dict:
    """Linear head for same-family pairs; nonlinear head and gradient alignment across families
    (CIFAR-100); on ImageNet alpha 0.1 and the logit loss off from epoch 50."""
    imagenet = dataset == "imagenet"
    hetero = pair.heterogeneous and not imagenet
    cfg = {"DHKD": {"CE_WEIGHT": 1.0, "ALPHA": 0.1 if imagenet else 1.0, "T": 2.0, "LOSS": "bkl_norm",
                    "HEAD": "nonlinear" if hetero else "linear", "KD_OFF_EPOCH": 50 if imagenet else 0}}
    if hetero:
        cfg["SOLVER"] = {"TRAINER": "align"}
    return cfg


def _ablations() -> Dict[str, dict]:
    """The paper's loss/head ablations (CE weight, alpha, loss, head), each with and without alignment."""
    table = {
        "ce_only": (1.0, 0.0, "bkl_norm", "linear"),
        "bkl_only": (0.0, 1.0, "bkl", "none"),
        "ce_bkl_one_head": (1.0, 1.0, "bkl", "none"),
        "ce_bkn_one_head": (1.0, 1.0, "bkl_norm", "none"),
        "dhkd_linear": (1.0, 1.0, "bkl_norm", "linear"),
        "dhkd_nonlinear": (1.0, 1.0, "bkl_norm", "nonlinear"),
    }
    out = {}
    for name, (ce, alpha, loss, head) in table.items():
        for suffix, trainer in (("", "base"), ("_align", "align")):
            out[name + suffix] = {"DHKD": {"CE_WEIGHT": ce, "ALPHA": alpha, "LOSS": loss, "HEAD": head},
                                  "SOLVER": {"TRAINER": trainer}}
    return out


@register_method("DHKD", summary="Dual-Head KD: BinaryKL-Norm on an auxiliary head", node=node, rules=RULES,
                 recipe=recipe, ablations=_ablations(), ablation_pair="res32x4_res8x4")
class DHKD(Distiller):
    """Both heads read feats["pooled_feat"]; the auxiliary head is owned here (not by the student),
    so ``student.state_dict()`` stays the plain student's and test time uses the main head.
    DHKD.HEAD none puts the logit-level loss on the main head (the paper's collapse ablation).
    """
    TEACHER_LOGITS_ONLY = True

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CN) -> None:
        super().__init__(student, teacher)
        self.c = cfg.DHKD
        fc = classifier_of(student)
        self.num_classes = fc.out_features
        self.aux_head = None
        if HEAD_TYPES[self.c.HEAD] is not None:
            rule = HEAD_INITS[self.c.HEAD_INIT](student)
            self.aux_head = AuxiliaryHead(fc.in_features, fc.out_features, self.c.HEAD, self.c.HIDDEN, self.c.DROPOUT, rule)
        self.logit_loss = losses.LOGIT_LOSSES[self.c.LOSS]

    def get_learnable_parameters(self) -> List[nn.Parameter]:
        extra = list(self.aux_head.parameters()) if self.aux_head is not None else []
        return super().get_learnable_parameters() + extra

    def get_extra_parameters(self) -> int:
        return 0 if self.aux_head is None else sum(p.numel() for p in self.aux_head.parameters())

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, feats = self.student(image)
        z_t = teacher_logits(self.teacher, image, kwargs)
        z_aux = logits if self.aux_head is None else self.aux_head(feats["pooled_feat"])
        epoch = kwargs.get("epoch", 1)
        alpha = 0.0 if (self.c.KD_OFF_EPOCH > 0 and epoch >= self.c.KD_OFF_EPOCH) else self.c.ALPHA
        loss_kd = alpha * self.logit_loss(z_aux, z_t, self.c.T)
        if self.c.MAIN_KD_WEIGHT > 0:
            loss_kd = loss_kd + self.c.MAIN_KD_WEIGHT * losses.kd_loss(logits, z_t, self.c.MAIN_KD_T)
        return logits, {"loss_ce": self.c.CE_WEIGHT * F.cross_entropy(logits, target), "loss_kd": loss_kd}

    def forward_test_heads(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits, feats = self.student(image)
        heads = {"main": logits}
        if self.aux_head is not None:
            heads["aux"] = self.aux_head(feats["pooled_feat"])
        return heads

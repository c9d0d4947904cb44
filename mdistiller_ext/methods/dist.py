"""DIST, distillation from a stronger teacher (Huang et al., NeurIPS 2022): the Pearson correlation of the
class distributions within each sample (inter-class) and within each class across the batch (intra-class).

Open details, each an option with its documented default: the paper's CIFAR-100 beta, gamma and tau were
not available to this project; the defaults are those of the authors' public loss module (beta = gamma =
1, tau = 4) with the cross-entropy at weight 1, for every pair. Its published CIFAR-100 numbers (as the
TTM authors' README cites them: res32x4 -> res8x4 76.31, res56 -> res20 71.75) are in the reference table.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from mdistiller_ext.methods import losses
from mdistiller_ext.methods.base import Distiller, Output, teacher_logits
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE


def node() -> CN:
    n = CN()
    n.CE_WEIGHT = 1.0
    n.BETA = 1.0          # weight of the inter-class (per-sample) relation
    n.GAMMA = 1.0         # weight of the intra-class (per-class, across the batch) relation
    n.T = 4.0
    n.LOGIT_STAND = False  # logit standardisation of both sides before the temperature
    return n


def recipe(dataset: str, pair_name: str, pair) -> dict:
    return {"DIST": {"CE_WEIGHT": 1.0, "BETA": 1.0, "GAMMA": 1.0, "T": 4.0}}


@register_method("DIST", summary="DIST: Pearson correlation of class distributions, within samples and within classes",
                 node=node, recipe=recipe,
                 rules=(("DIST.T", POSITIVE), ("DIST.BETA", NON_NEGATIVE), ("DIST.GAMMA", NON_NEGATIVE),
                        ("DIST.CE_WEIGHT", NON_NEGATIVE)))
class DIST(Distiller):
    TEACHER_LOGITS_ONLY = True

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CN) -> None:
        super().__init__(student, teacher)
        self.c = cfg.DIST

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, _ = self.student(image)
        z_t = teacher_logits(self.teacher, image, kwargs)
        c = self.c
        return logits, {
            "loss_ce": c.CE_WEIGHT * F.cross_entropy(logits, target),
            "loss_kd": losses.dist_loss(*losses.logit_stand(c.LOGIT_STAND, logits, z_t), c.T, c.BETA, c.GAMMA),
        }

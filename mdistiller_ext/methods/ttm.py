"""TTM, transformed teacher matching (Zheng & Yang, ICLR 2024): the student at temperature 1 matches the
teacher's probabilities under a power transform p^gamma (a temperature on the teacher only). WTTM
(``methods/wttm.py``) is this method with each sample weighted: one loss with an option
(``losses.transformed_teacher_loss``), each method its own module and node.

Open details, each an option with its documented default: the paper lists its per-pair gamma and beta in an
appendix this project could not read; the defaults are the authors' README examples for every pair (TTM:
gamma 0.1, beta 45; WTTM: gamma 0.2, beta 4, the README's WTTM example, where it was combined with CRD),
with the cross-entropy at weight 1. Published CIFAR-100 numbers (their README: TTM 76.17 / 71.83, WTTM
76.06 / 71.92 on res32x4 -> res8x4 / res56 -> res20) are in the reference table.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from mdistiller_ext.methods import losses
from mdistiller_ext.methods.base import Distiller, Output, teacher_logits
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE

def transformed_node(gamma: float, beta: float) -> CN:
    """The node of a transformed-teacher method: CE_WEIGHT, GAMMA (the power on the teacher's probabilities,
    1/T), BETA (the distillation weight), LOGIT_STAND (logit standardisation of both sides first)."""
    n = CN()
    n.CE_WEIGHT = 1.0
    n.GAMMA = gamma
    n.BETA = beta
    n.LOGIT_STAND = False
    return n


def transformed_rules(name: str) -> tuple:
    return ((f"{name}.GAMMA", POSITIVE), (f"{name}.BETA", NON_NEGATIVE), (f"{name}.CE_WEIGHT", NON_NEGATIVE))


GAMMA, BETA = 0.1, 45.0  # the authors' README example (vgg13 -> vgg8), for every pair


def node() -> CN:
    return transformed_node(GAMMA, BETA)


def recipe(dataset: str, pair_name: str, pair) -> dict:
    return {"TTM": {"CE_WEIGHT": 1.0, "GAMMA": GAMMA, "BETA": BETA}}


@register_method("TTM", summary="TTM: the student matches the teacher's power-transformed probabilities",
                 node=node, recipe=recipe, rules=transformed_rules("TTM"))
class TTM(Distiller):
    TEACHER_LOGITS_ONLY = True
    NODE, WEIGHTED = "TTM", False

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CN) -> None:
        super().__init__(student, teacher)
        self.c = cfg[self.NODE]

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, _ = self.student(image)
        z_t = teacher_logits(self.teacher, image, kwargs)
        c = self.c
        matched = losses.transformed_teacher_loss(*losses.logit_stand(c.LOGIT_STAND, logits, z_t), c.GAMMA, self.WEIGHTED)
        return logits, {"loss_ce": c.CE_WEIGHT * F.cross_entropy(logits, target), "loss_kd": c.BETA * matched}

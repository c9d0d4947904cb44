"""Decoupled KD, as mdistiller's DKD distiller, with the warm-up min(epoch/WARMUP, 1); with mdistiller
installed its own class runs. The config node (DKD.*) is the host's."""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode

from mdistiller_ext.methods import losses
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE
from mdistiller_ext.methods.base import Distiller, Output, fractional_warmup_on_host, step_warmup, teacher_logits

# DKD's per-pair beta (mdistiller's configs); AEKT uses the same values. The pairs outside the papers'
# tables (CIFAR-10's, CIFAR-100's res20_res8) take the value of the same family's published pairs: 2.0
# for a CIFAR ResNet teacher and student, as res56_res20 and res110_res32 (a choice, not a published setting).
BETA: Dict[Tuple[str, str], float] = {
    **{("cifar100", p): b for p, b in (("res56_res20", 2.0), ("res110_res32", 2.0), ("res32x4_res8x4", 8.0),
                                       ("wrn40_2_wrn_16_2", 6.0), ("wrn40_2_wrn_40_1", 6.0), ("vgg13_vgg8", 6.0),
                                       ("vgg13_mv2", 6.0), ("res50_mv2", 8.0), ("res32x4_shuv1", 8.0),
                                       ("res32x4_shuv2", 8.0), ("wrn40_2_shuv1", 8.0), ("res20_res8", 2.0))},
    ("cifar10", "res56_res20"): 2.0, ("cifar10", "res32x4_res8x4"): 8.0, ("cifar10", "res20_res8"): 2.0,
    ("imagenet", "r34_r18"): 0.5, ("imagenet", "r50_mv1"): 2.0,
}


def recipe(dataset: str, pair_name: str, pair) -> dict:
    imagenet = dataset == "imagenet"
    return {"DKD": {"CE_WEIGHT": 1.0, "ALPHA": 1.0, "BETA": BETA[(dataset, pair_name)], "T": 1.0 if imagenet else 4.0,
                    "WARMUP": 1 if imagenet else 20}}


def check_config(cfg: CfgNode, standalone_engine: bool) -> None:
    if not standalone_engine:
        fractional_warmup_on_host("DKD.WARMUP", cfg.DKD.WARMUP)


@register_method("DKD", summary="Decoupled KD (mdistiller's); DKD.LOGIT_STAND: logit standardisation", recipe=recipe,
                 host_provides=True, host_node_keys={"LOGIT_STAND": False}, check_config=check_config, rules=(
    ("DKD.T", POSITIVE), ("DKD.ALPHA", NON_NEGATIVE), ("DKD.BETA", NON_NEGATIVE), ("DKD.CE_WEIGHT", NON_NEGATIVE),
    ("DKD.WARMUP", NON_NEGATIVE)))
class DKD(Distiller):
    TEACHER_LOGITS_ONLY = True

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode) -> None:
        super().__init__(student, teacher)
        self.c = cfg.DKD

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, _ = self.student(image)
        z_t = teacher_logits(self.teacher, image, kwargs)
        kd = losses.dkd_loss(*losses.logit_stand(self.c.LOGIT_STAND, logits, z_t), target, self.c.ALPHA, self.c.BETA, self.c.T)
        return logits, {
            "loss_ce": self.c.CE_WEIGHT * F.cross_entropy(logits, target),
            "loss_kd": step_warmup(kwargs, self.c.WARMUP) * kd,
        }

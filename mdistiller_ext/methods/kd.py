"""Hinton KD, as mdistiller's KD distiller (CE_WEIGHT * CE + KD_WEIGHT * T^2 KL); with mdistiller
installed its own class runs. The config node (KD.TEMPERATURE, KD.LOSS.*) is the host's."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode

from mdistiller_ext.methods import losses
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE
from mdistiller_ext.methods.base import Distiller, Output, teacher_logits


def recipe(dataset: str, pair_name: str, pair) -> dict:
    imagenet = dataset == "imagenet"  # mdistiller's settings: T 1, CE 0.5, KD 0.5 on ImageNet
    return {"KD": {"TEMPERATURE": 1 if imagenet else 4,
                   "LOSS": {"CE_WEIGHT": 0.5 if imagenet else 0.1, "KD_WEIGHT": 0.5 if imagenet else 0.9}}}


# logit standardisation's CIFAR-100 recipe for KD (its authors' README and logs: T 2, KD weight 9; CE weight as KD's)
ABLATIONS = {"logit_stand": {"KD": {"LOGIT_STAND": True, "TEMPERATURE": 2, "LOSS": {"KD_WEIGHT": 9.0}}}}


@register_method("KD", summary="Hinton KD (mdistiller's); KD.LOGIT_STAND: logit standardisation", recipe=recipe,
                 host_provides=True, host_node_keys={"LOGIT_STAND": False}, ablations=ABLATIONS,
                 ablation_pair="res32x4_res8x4", rules=(
    ("KD.TEMPERATURE", POSITIVE), ("KD.LOSS.CE_WEIGHT", NON_NEGATIVE), ("KD.LOSS.KD_WEIGHT", NON_NEGATIVE)))
class KD(Distiller):
    TEACHER_LOGITS_ONLY = True

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode) -> None:
        super().__init__(student, teacher)
        self.temperature = cfg.KD.TEMPERATURE
        self.ce_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_weight = cfg.KD.LOSS.KD_WEIGHT
        self.logit_stand = cfg.KD.LOGIT_STAND

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        logits, _ = self.student(image)
        z_t = teacher_logits(self.teacher, image, kwargs)
        return logits, {
            "loss_ce": self.ce_weight * F.cross_entropy(logits, target),
            "loss_kd": self.kd_weight * losses.kd_loss(*losses.logit_stand(self.logit_stand, logits, z_t), self.temperature),
        }

"""AEKT, Adaptive Explicit Knowledge Transfer (this project's reconstruction of a paper without public
code; docs/methods/aekt.md says what is reconstructed): a confidence-weighted explicit term plus
DKD's implicit term, and an optional C x C task-serialization layer between the classification and
the distillation logits."""
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from mdistiller_ext.methods import losses
from mdistiller_ext.methods.heads import SerializationLayer, SerializedStudent, classifier_of
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE, one_of
from mdistiller_ext.errors import UserError
from mdistiller_ext.methods.base import (Distiller, Output, fractional_warmup_on_host, global_mean, step_warmup,
                                         teacher_logits)
from mdistiller_ext.methods.dkd import BETA


def node() -> CN:
    n = CN()
    n.CE_WEIGHT = 1.0
    n.ALPHA = 1.0              # weight of the explicit (target-vs-rest) term
    n.BETA = 8.0               # weight of the implicit (non-target) term
    n.T = 4.0
    n.WARMUP = 20              # linear warm-up of the distillation term, in epochs (0: none)
    n.RATIO_MODE = "teacher_over_student"   # none | teacher_over_student | student_over_teacher
    n.W_MAX = 2.0
    n.RATIO_NORM = "batch_mean"      # clip | batch_mean
    n.RATIO_T = 0.0            # temperature of the ratio; <= 0 means AEKT.T
    n.SERIAL = "cls_then_kd"   # none | cls_then_kd | kd_then_cls
    n.SERIAL_DECAY = "identity"  # identity: weight decay pulls W to I; zero: pulls W to 0
    n.SERIAL_LR = 1.0          # the serialization layer's learning rate, as a multiple of the schedule's
    n.LOGIT_STAND = False      # logit standardisation (z-scores) of the distilled logits before the temperature
    return n


Heads = Tuple[torch.Tensor, torch.Tensor]


def _one_head(d: "AEKT", image: torch.Tensor) -> Heads:
    logits, _ = d.student(image)
    return logits, logits


def _cls_then_kd(d: "AEKT", image: torch.Tensor) -> Heads:
    logits, _ = d.student(image)
    return logits, d.serial(logits)


def _kd_then_cls(d: "AEKT", image: torch.Tensor) -> Heads:
    logits, feats = d.student(image)
    return logits, feats["pre_serial_logits"]


# AEKT.SERIAL -> (deployed logits z_cls, distillation logits z_kd). cls_then_kd: the student's logits
# take CE and are deployed, S(z) takes AEKT. kd_then_cls: the student's logits take AEKT, S(.) takes CE
# and is deployed, so S is part of the student (SerializedStudent). none: one head takes both.
SERIAL_MODES: Dict[str, Callable[["AEKT", torch.Tensor], Heads]] = {
    "none": _one_head, "cls_then_kd": _cls_then_kd, "kd_then_cls": _kd_then_cls}
# AEKT.SERIAL_DECAY -> whether weight decay pulls the layer towards the identity (else towards zero)
SERIAL_DECAY = {"identity": True, "zero": False}

RULES = (
    ("AEKT.T", POSITIVE),
    ("AEKT.ALPHA", NON_NEGATIVE),
    ("AEKT.BETA", NON_NEGATIVE),
    ("AEKT.CE_WEIGHT", NON_NEGATIVE),
    ("AEKT.WARMUP", NON_NEGATIVE),
    ("AEKT.RATIO_MODE", one_of(losses.RATIO_MODES)),
    ("AEKT.W_MAX", POSITIVE),
    ("AEKT.RATIO_NORM", one_of(losses.RATIO_NORMS)),
    ("AEKT.RATIO_T", (NON_NEGATIVE[0], "a number >= 0 (0: use AEKT.T)")),
    ("AEKT.SERIAL", one_of(SERIAL_MODES)),
    ("AEKT.SERIAL_DECAY", one_of(SERIAL_DECAY)),
    ("AEKT.SERIAL_LR", POSITIVE),
)


def check_config(cfg: CN, standalone_engine: bool) -> None:
    c = cfg.AEKT
    if standalone_engine:
        return
    if c.SERIAL_LR != 1.0:
        raise UserError(f"config AEKT.SERIAL_LR = {c.SERIAL_LR} needs this project's engine (EXT.ENGINE ext): "
                        "mdistiller's trainers build one learning rate for every parameter")
    fractional_warmup_on_host("AEKT.WARMUP", c.WARMUP)


def recipe(dataset: str, pair_name: str, pair) -> dict:
    imagenet = dataset == "imagenet"
    return {"AEKT": {"CE_WEIGHT": 1.0, "ALPHA": 1.0, "BETA": BETA[(dataset, pair_name)], "T": 1.0 if imagenet else 4.0,
                     "WARMUP": 1 if imagenet else 20, "RATIO_MODE": "teacher_over_student", "W_MAX": 2.0,
                     "RATIO_NORM": "batch_mean", "SERIAL": "cls_then_kd"}}


ABLATIONS = {name: {"AEKT": patch} for name, patch in {
    "ratio_none": {"RATIO_MODE": "none"},
    "ratio_teacher_over_student": {"RATIO_MODE": "teacher_over_student"},
    "ratio_student_over_teacher": {"RATIO_MODE": "student_over_teacher"},
    "serial_none": {"SERIAL": "none"},
    "serial_cls_then_kd": {"SERIAL": "cls_then_kd"},
    "serial_kd_then_cls": {"SERIAL": "kd_then_cls"},
    "nckd_only": {"ALPHA": 0.0, "SERIAL": "none"},
    "nckd_explicit": {"SERIAL": "none"},
    "full": {},
    "dkd_equivalent": {"RATIO_MODE": "none", "SERIAL": "none"},
}.items()}


@register_method("AEKT", summary="Adaptive Explicit KT: confidence-weighted TCKD + NCKD, serialization layer",
                 node=node, rules=RULES, recipe=recipe, ablations=ABLATIONS, ablation_pair="res32x4_res8x4",
                 check_config=check_config)
class AEKT(Distiller):
    TEACHER_LOGITS_ONLY = True

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CN) -> None:
        c = cfg.AEKT
        num_classes = classifier_of(student).out_features
        serial = None
        if c.SERIAL != "none":
            serial = SerializationLayer(num_classes, decay_to_identity=SERIAL_DECAY[c.SERIAL_DECAY])
        if c.SERIAL == "kd_then_cls":
            student = SerializedStudent(student, serial)
        super().__init__(student, teacher)
        self.c = c
        self.serial_mode = c.SERIAL
        self.serial = serial if c.SERIAL == "cls_then_kd" else None
        self.num_classes = num_classes
        # per-epoch sums on the device, read once an epoch: w (sum, max), explicit and implicit terms, samples
        self._sums = torch.zeros(5)

    def serialization_layer(self):
        if self.serial_mode == "kd_then_cls":
            return self.student.serial
        return self.serial

    def get_learnable_parameters(self) -> List[nn.Parameter]:
        extra = list(self.serial.parameters()) if self.serial is not None else []
        return super().get_learnable_parameters() + extra

    def param_groups(self) -> List[Dict]:
        layer = self.serialization_layer()
        if layer is None or self.c.SERIAL_LR == 1.0:
            return super().param_groups()
        own = {id(p) for p in layer.parameters()}
        rest = [p for p in self.get_learnable_parameters() if id(p) not in own]
        return [{"params": rest, "lr_mult": 1.0}, {"params": list(layer.parameters()), "lr_mult": float(self.c.SERIAL_LR)}]

    def get_extra_parameters(self) -> int:
        # in kd_then_cls the layer is part of the deployed student, not an extra
        return 0 if self.serial is None else sum(p.numel() for p in self.serial.parameters())

    def _heads(self, image: torch.Tensor) -> Heads:
        return SERIAL_MODES[self.serial_mode](self, image)

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs) -> Output:
        z_cls, z_kd = self._heads(image)
        z_t = teacher_logits(self.teacher, image, kwargs)
        c = self.c
        # the ratio's batch mean over the global batch: N processes weigh samples as one process would
        w, tckd, nckd = losses.aekt_terms(*losses.logit_stand(c.LOGIT_STAND, z_kd, z_t), target, c.T, c.RATIO_MODE,
                                          c.W_MAX, c.RATIO_NORM, c.RATIO_T, global_mean)
        explicit, implicit = (c.ALPHA * w * tckd).mean(), (c.BETA * nckd).mean()
        if self.training:
            self._observe(w, explicit, implicit)
        return z_cls, {
            "loss_ce": c.CE_WEIGHT * F.cross_entropy(z_cls, target),
            "loss_kd": step_warmup(kwargs, c.WARMUP) * (explicit + implicit),
        }

    def _observe(self, w: torch.Tensor, explicit: torch.Tensor, implicit: torch.Tensor) -> None:
        n = w.shape[0]
        if self._sums.device != w.device:
            self._sums = self._sums.to(w.device)
        step = torch.stack([w.sum(), w.max(), explicit.detach() * n, implicit.detach() * n, w.new_tensor(float(n))])
        self._sums = torch.cat([self._sums[:1] + step[:1], torch.maximum(self._sums[1:2], step[1:2]),
                                self._sums[2:] + step[2:]])

    def epoch_state(self) -> Dict[str, torch.Tensor]:
        return {"sums": self._sums.detach().cpu().clone()}

    def load_epoch_state(self, state: Dict[str, torch.Tensor]) -> None:
        self._sums = state["sums"].clone()  # _observe moves it to the batches' device

    def take_diagnostics(self) -> Dict[str, float]:
        """The epoch's mean and max of w, its mean explicit (alpha * w * TCKD) and implicit (beta * NCKD)
        terms before the warm-up factor, and the serialization layer's distance from the identity
        (||W - I||_F) and smallest singular value."""
        s = self._sums.tolist()
        self._sums = torch.zeros_like(self._sums)
        if s[4] == 0:
            return {}
        out = {"aekt_w_mean": s[0] / s[4], "aekt_w_max": s[1], "aekt_explicit": s[2] / s[4], "aekt_implicit": s[3] / s[4]}
        layer = self.serialization_layer()
        if layer is not None:
            with torch.no_grad():
                m = layer.matrix().detach().double().cpu()
                out["aekt_serial_dist"] = float(torch.linalg.matrix_norm(m - torch.eye(m.shape[0], dtype=m.dtype)))
                out["aekt_serial_smin"] = float(torch.linalg.svdvals(m).min())
        return out

    def forward_test_heads(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        z_cls, z_kd = self._heads(image)
        return {"main": z_cls, "kd": z_kd} if self.serial_mode != "none" else {"main": z_cls}

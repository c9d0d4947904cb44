"""CRD, contrastive representation distillation (Tian et al., ICLR 2020), on this engine, any device.

The student's and the teacher's pooled features are embedded (linear, then L2-normalised) into DIM
dimensions; a memory bank keeps one embedding per training sample for each side, updated with momentum
every step. Each sample's embedding is scored against its positive and K negatives in the other side's
memory (exp(similarity / T), normalised by a constant fixed on the first batch), and both sides take
the NCE loss (``losses.contrastive_nce_loss``). The engine hands the sample indices and the negatives
(``data/contrast.py``); the memory is a buffer, so checkpoints hold it and a resume continues it exactly.
Memory: 2 x training images x DIM floats (CIFAR-100: 2 x 50,000 x 128 x 4 bytes = 51.2 MB).

mdistiller's own CRD (its trainer, sampler and class) stays available through ``EXT.ENGINE host``.
The config node (CRD.*) is the host's; the recipe's embedding input sizes come from the models.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode

from mdistiller_ext.data.contrast import MODES
from mdistiller_ext.methods import losses
from mdistiller_ext.methods.base import Distiller, Output, global_mean
from mdistiller_ext.methods.feature_shapes import crd_settings, forward_shapes, zoo_shapes
from mdistiller_ext.recipes import IMAGENET_FEATURE_SOLVER
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE, one_of


def recipe(dataset: str, pair_name: str, pair) -> dict:
    # TRAINER crd: mdistiller's CRD trainer on its route; this engine treats it as its base trainer
    cfg = {"SOLVER": {"TRAINER": "crd"},
           "CRD": {"FEAT": crd_settings(zoo_shapes(dataset, pair.student), zoo_shapes(dataset, pair.teacher))}}
    if dataset == "imagenet":
        cfg["SOLVER"].update(IMAGENET_FEATURE_SOLVER)
    return cfg


class Embed(nn.Module):
    """Linear projection to the contrastive space, then L2 normalisation."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x.reshape(x.shape[0], -1))
        return z / z.pow(2).sum(1, keepdim=True).pow(0.5)


def _gathered(t: torch.Tensor) -> torch.Tensor:
    """``t`` from every process, concatenated in rank order (itself in a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


class ContrastMemory(nn.Module):
    """Both sides' memory of every training sample, and the scores of a batch against it."""

    def __init__(self, dim: int, num_data: int, temperature: float, momentum: float) -> None:
        super().__init__()
        self.num_data, self.temperature, self.momentum = num_data, temperature, momentum
        bound = 1.0 / math.sqrt(dim / 3)  # the reference initialisation: uniform in [-bound, bound]
        self.register_buffer("student_memory", torch.rand(num_data, dim) * (2 * bound) - bound)
        self.register_buffer("teacher_memory", torch.rand(num_data, dim) * (2 * bound) - bound)
        # the normalisation constants of the student's and the teacher's scores, fixed on the first batch (-1: not yet)
        self.register_buffer("z", torch.full((2,), -1.0))

    def scores(self, v_s: torch.Tensor, v_t: torch.Tensor, contrast: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(student's scores against the teacher's memory, teacher's against the student's), each (B, K+1)."""
        b, k1 = contrast.shape
        # in fp32 whatever autocast says: exp(similarity / 0.07) turns a bf16 rounding of 2^-8 into 4%
        with torch.autocast(v_s.device.type, enabled=False):
            v_s, v_t = v_s.float(), v_t.float()
            rows = contrast.reshape(-1)
            mem_t = self.teacher_memory.index_select(0, rows).view(b, k1, -1)
            mem_s = self.student_memory.index_select(0, rows).view(b, k1, -1)
            out_s = torch.exp(torch.bmm(mem_t, v_s.unsqueeze(2)).squeeze(2) / self.temperature)
            out_t = torch.exp(torch.bmm(mem_s, v_t.unsqueeze(2)).squeeze(2) / self.temperature)
            if self.z[0] < 0:  # the mean score times the memory's size, over the global batch
                with torch.no_grad():
                    self.z.copy_(torch.stack([global_mean(out_s.detach()), global_mean(out_t.detach())]) * self.num_data)
            return out_s / self.z[0], out_t / self.z[1]

    @torch.no_grad()
    def update(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor) -> None:
        """Each sample's memory moves towards its new embedding (momentum), renormalised; under torch.distributed
        with every process's samples, so all processes keep one memory."""
        v_s, v_t, index = _gathered(v_s.detach().float()), _gathered(v_t.detach().float()), _gathered(index)
        for memory, v in ((self.student_memory, v_s), (self.teacher_memory, v_t)):
            moved = memory.index_select(0, index) * self.momentum + v * (1 - self.momentum)
            memory.index_copy_(0, index, moved / moved.pow(2).sum(1, keepdim=True).pow(0.5))


def check_crd_shapes(cfg: CfgNode, student, teacher) -> None:
    """The embeddings' input sizes are the models' pooled features: a mismatch would fail deep inside a
    forward pass, so it is a one-line error here, with the values that fit."""
    from mdistiller_ext.errors import UserError

    size = 224 if cfg.DATASET.TYPE == "imagenet" else 32
    want = crd_settings(forward_shapes(student, size), forward_shapes(teacher, size))
    wrong = [f"CRD.FEAT.{k} {cfg.CRD.FEAT[k]} (expected {v})" for k, v in want.items() if cfg.CRD.FEAT[k] != v]
    if wrong:
        raise UserError(f"config CRD.FEAT does not fit {cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT}: {'; '.join(wrong)}; "
                        "use the shipped configs/<dataset>/crd/<pair>.yaml, whose sizes are derived from the models")


def check_config(cfg: CfgNode, standalone_engine: bool) -> None:
    if standalone_engine and cfg.SOLVER.TRAINER not in ("crd", "base"):
        from mdistiller_ext.errors import UserError

        raise UserError(f"config SOLVER.TRAINER = {cfg.SOLVER.TRAINER!r} does not apply to CRD; use crd (the recipe's) or base")


@register_method("CRD", summary="contrastive representation distillation: embeddings, a memory bank, NCE",
                 recipe=recipe, host_provides=True, needs_num_data=True, host_data=True, check_config=check_config,
                 check_models=check_crd_shapes,
                 rules=(("CRD.FEAT.DIM", POSITIVE), ("CRD.NCE.K", POSITIVE), ("CRD.NCE.TEMPERATURE", POSITIVE),
                        ("CRD.NCE.MOMENTUM", NON_NEGATIVE), ("CRD.LOSS.CE_WEIGHT", NON_NEGATIVE),
                        ("CRD.LOSS.FEAT_WEIGHT", NON_NEGATIVE), ("CRD.MODE", one_of(MODES))))
class CRD(Distiller):
    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CfgNode, num_data: int) -> None:
        super().__init__(student, teacher)
        c = cfg.CRD
        self.c = c
        self.num_data = num_data
        self.embed_s = Embed(c.FEAT.STUDENT_DIM, c.FEAT.DIM)
        self.embed_t = Embed(c.FEAT.TEACHER_DIM, c.FEAT.DIM)
        self.memory = ContrastMemory(c.FEAT.DIM, num_data, c.NCE.TEMPERATURE, c.NCE.MOMENTUM)

    def contrast_spec(self) -> Optional[Tuple[int, str]]:
        return int(self.c.NCE.K), self.c.MODE

    def get_learnable_parameters(self):
        return super().get_learnable_parameters() + list(self.embed_s.parameters()) + list(self.embed_t.parameters())

    def get_extra_parameters(self) -> int:
        return sum(p.numel() for p in (*self.embed_s.parameters(), *self.embed_t.parameters()))

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, index: Optional[torch.Tensor] = None,
                      contrastive_index: Optional[torch.Tensor] = None, **kwargs) -> Output:
        if index is None or contrastive_index is None:
            raise ValueError("CRD needs each sample's index and its contrastive indices (the engine's NegativeSampler)")
        logits, feats = self.student(image)
        with torch.no_grad():
            _, teacher_feats = self.teacher(image)
        v_s, v_t = self.embed_s(feats["pooled_feat"]), self.embed_t(teacher_feats["pooled_feat"])
        out_s, out_t = self.memory.scores(v_s, v_t, contrastive_index)
        nce = losses.contrastive_nce_loss(out_s, self.num_data) + losses.contrastive_nce_loss(out_t, self.num_data)
        if self.training:
            self.memory.update(v_s, v_t, index)
        return logits, {"loss_ce": self.c.LOSS.CE_WEIGHT * F.cross_entropy(logits, target),
                        "loss_kd": self.c.LOSS.FEAT_WEIGHT * nce}

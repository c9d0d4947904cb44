"""Per-architecture settings of mdistiller's feature baselines, derived from models' feature shapes.

Shapes are given in the form of the host's facts files: ``{"feats": [[B, C, H, W], ...],
"preact_feats": [...], "pooled_feat": [B, D]}`` (the forward outputs of a model).

ReviewKD (as mdistiller implements it) pairs, from the deep end, the teacher's
``preact_feats[1:] + [pooled]`` with the last as many entries of the student's
``feats + [pooled]`` (``preact_feats`` with STU_PREACT). IN_CHANNELS / OUT_CHANNELS list the
student's / teacher's channels shallow to deep; SHAPES / OUT_SHAPES their spatial sizes deep to
shallow (the pooled feature counts as 1x1).
"""
import functools
from typing import Dict, List

Shapes = Dict[str, object]


def _levels(feats: List[List[int]], pooled: List[int]) -> List[List[int]]:
    return [[s[1], s[2]] for s in feats] + [[pooled[1], 1]]


def reviewkd_settings(student: Shapes, teacher: Shapes, stu_preact: bool) -> Dict[str, List[int]]:
    stu_preact = stu_preact and "preact_feats" in student
    t_levels = _levels(teacher["preact_feats"][1:], teacher["pooled_feat"])
    s_all = _levels(student["preact_feats" if stu_preact else "feats"], student["pooled_feat"])
    if len(s_all) < len(t_levels):
        raise ValueError(f"the student exposes {len(s_all)} feature levels, the teacher needs {len(t_levels)}")
    s_levels = s_all[-len(t_levels):]
    return {
        "IN_CHANNELS": [c for c, _ in s_levels],
        "SHAPES": [h for _, h in s_levels][::-1],
        "OUT_CHANNELS": [c for c, _ in t_levels],
        "OUT_SHAPES": [h for _, h in t_levels][::-1],
        "STU_PREACT": stu_preact,
    }


def crd_settings(student: Shapes, teacher: Shapes) -> Dict[str, int]:
    """CRD embeds the pooled features: its input sizes are the two pooled dimensions."""
    return {"STUDENT_DIM": student["pooled_feat"][1], "TEACHER_DIM": teacher["pooled_feat"][1]}


def forward_shapes(model, image_size: int) -> Shapes:
    """The facts-file shape dict of one of our zoo models (a forward on a batch of 2)."""
    import torch

    model.eval()
    with torch.no_grad():
        _, feats = model(torch.zeros(2, 3, image_size, image_size))
    return {k: ([list(t.shape) for t in v] if isinstance(v, list) else list(v.shape)) for k, v in feats.items()}


@functools.lru_cache(maxsize=None)
def zoo_shapes(dataset: str, name: str) -> Shapes:
    """Feature shapes of a zoo model (the standalone zoo, equal to the host's facts; tests check that)."""
    from mdistiller_ext.host.standalone.models import cifar_model_dict, imagenet_model_dict

    if dataset == "imagenet":
        return forward_shapes(imagenet_model_dict[name](num_classes=1000), 224)
    return forward_shapes(cifar_model_dict[name][0](num_classes=100), 32)

"""ReviewKD: mdistiller's implementation only. Registered for its recipe: the feature shapes come
from the models, the weights from mdistiller's configs."""
from yacs.config import CfgNode

from mdistiller_ext.methods.feature_shapes import forward_shapes, reviewkd_settings, zoo_shapes
from mdistiller_ext.errors import UserError
from mdistiller_ext.recipes import IMAGENET_FEATURE_SOLVER
from mdistiller_ext.registry import Method, add

CIFAR_WEIGHT = 5.0
# mdistiller's ImageNet settings that are not shape-derived: (REVIEWKD_WEIGHT, MAX_MID_CHANNEL)
IMAGENET = {"r34_r18": (1.0, 512), "r50_mv1": (8.0, 256)}


def recipe(dataset: str, pair_name: str, pair) -> dict:
    imagenet = dataset == "imagenet"
    derived = reviewkd_settings(zoo_shapes(dataset, pair.student), zoo_shapes(dataset, pair.teacher), stu_preact=imagenet)
    if not imagenet:
        return {"REVIEWKD": {"REVIEWKD_WEIGHT": CIFAR_WEIGHT, **derived}}
    weight, mid = IMAGENET[pair_name]
    return {"SOLVER": dict(IMAGENET_FEATURE_SOLVER),
            "REVIEWKD": {"CE_WEIGHT": 1.0, "REVIEWKD_WEIGHT": weight, "WARMUP_EPOCHS": 1, **derived, "MAX_MID_CHANNEL": mid}}


def check_reviewkd_shapes(cfg: CfgNode, student, teacher) -> None:
    """mdistiller's ReviewKD takes its feature shapes from the config; a mismatch with the models would
    fail deep inside a forward pass, so it is a one-line error here, with the values that fit."""
    size = 224 if cfg.DATASET.TYPE == "imagenet" else 32
    want = reviewkd_settings(forward_shapes(student, size), forward_shapes(teacher, size), cfg.REVIEWKD.STU_PREACT)
    wrong = [f"{k} {list(cfg.REVIEWKD[k])} (expected {v})" for k, v in want.items()
             if k != "STU_PREACT" and list(cfg.REVIEWKD[k]) != v]
    if wrong:
        raise UserError(f"config REVIEWKD does not fit {cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT}: {'; '.join(wrong)}; "
                        "use the shipped configs/<dataset>/reviewkd/<pair>.yaml, whose shapes are derived from the models")


add(Method("REVIEWKD", None, slug="reviewkd", summary="knowledge review (mdistiller only)", recipe=recipe,
           host_provides=True, check_models=check_reviewkd_shapes))

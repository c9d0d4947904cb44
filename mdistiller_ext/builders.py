"""config -> models -> distiller. Every user mistake is a one-line UserError."""
from typing import Optional, Tuple

import torch.nn as nn
from yacs.config import CfgNode

from mdistiller_ext import registry
from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.runs.checkpoint import load_into
from mdistiller_ext.errors import UserError
from mdistiller_ext.runs.teachers import resolve_teacher_checkpoint


def _model_table(dataset: str):
    return host.imagenet_model_dict if dataset == "imagenet" else host.cifar_model_dict


def build_model(name: str, dataset: str, num_classes: int) -> nn.Module:
    table = _model_table(dataset)
    if name not in table:
        raise UserError(f"unknown model {name!r} for {dataset}; choose one of: {', '.join(sorted(table))}")
    if dataset == "imagenet":
        return table[name](pretrained=False, num_classes=num_classes)
    return table[name][0](num_classes=num_classes)


def teacher_path(cfg: CfgNode) -> Optional[str]:
    """The teacher checkpoint a run loads, or None where the teacher is torchvision's pretrained ImageNet model."""
    name, dataset = cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE
    if dataset == "imagenet" and not cfg.EXT.TEACHER_CKPT:
        return None
    host_path = None if dataset == "imagenet" else _model_table(dataset)[name][1]
    return resolve_teacher_checkpoint(cfg, name, host_path)


def build_teacher(cfg: CfgNode, num_classes: int) -> nn.Module:
    name, dataset = cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE
    teacher = build_model(name, dataset, num_classes)
    if dataset == "imagenet" and not cfg.EXT.TEACHER_CKPT:
        if not host.HAS_MDISTILLER:
            raise UserError("ImageNet teachers come from torchvision's pretrained weights through mdistiller; "
                            "install mdistiller or set EXT.TEACHER_CKPT to a local checkpoint")
        return host.imagenet_model_dict[name](pretrained=True)
    load_into(teacher, teacher_path(cfg), f"teacher {name} ({num_classes} classes)")
    return teacher


def build_distiller(cfg: CfgNode, num_classes: int, num_data: int, load_teacher: bool = True,
                    host_classes: bool = False) -> Tuple[nn.Module, nn.Module]:
    """Returns (distiller, student). ``load_teacher=False`` leaves the teacher's weights as initialised
    (for loading a whole distiller checkpoint, which holds them).

    This project's classes are built wherever it has one (its KD and DKD reproduce mdistiller's and add
    the per-step warm-up and the teacher-logit cache), so this engine trains the same code with and
    without mdistiller; ``host_classes`` (mdistiller's trainers) takes mdistiller's own instead."""
    kind = cfg.DISTILLER.TYPE
    classes = registration.distiller_registry()
    method = registry.find(kind)
    if not host_classes and method is not None and method.distiller is not None:
        classes[kind] = method.distiller
    if kind not in classes:
        if kind in host.HOST_ONLY_METHODS or (method is not None and method.host_provides):
            raise UserError(f"DISTILLER.TYPE {kind} requires mdistiller (not installed); install it from its GitHub "
                            f"repository, or use one of {', '.join(sorted(classes))}")
        raise UserError(f"unknown DISTILLER.TYPE {kind!r}; choose one of: {', '.join(sorted(classes))}")
    student = build_model(cfg.DISTILLER.STUDENT, cfg.DATASET.TYPE, num_classes)
    if method is not None and not method.needs_teacher:
        return classes[kind](student), student
    teacher = build_teacher(cfg, num_classes) if load_teacher else build_model(cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE, num_classes)
    if method is not None and method.check_models is not None:
        method.check_models(cfg, student, teacher)
    if method is not None and method.needs_num_data:
        return classes[kind](student, teacher, cfg, num_data), student
    return classes[kind](student, teacher, cfg), student

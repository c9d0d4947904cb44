"""Registration into mdistiller: this project's methods in its ``distiller_dict``, its CFG nodes in its
CFG and the ``align`` trainer in its ``trainer_dict`` (idempotent, no patching); and the registries
the rest of the package reads, with mdistiller or without it. ``import mdistiller_ext`` calls
``register()``.
"""
from typing import Dict

from . import config, host

_registered = False


def register() -> None:
    """Add DHKD/AEKT (and the CFG nodes, and the gradient-alignment trainer) to the host. Idempotent."""
    global _registered
    config.add_nodes(host.host_cfg())
    if not host.HAS_MDISTILLER or _registered:
        return
    from .distillers import METHODS
    from .engine.host_trainer import make_align_trainer

    distillers, trainers = host.host_distillers(), host.host_trainer_dict()
    for name, cls in METHODS.items():
        distillers.setdefault(name, cls)
    trainers.setdefault("align", make_align_trainer(trainers["base"]))
    _registered = True


def distiller_registry() -> Dict[str, type]:
    """DISTILLER.TYPE -> class: the host's dict (plus ours) or the standalone set."""
    from .distillers import METHODS, STANDALONE_BASELINES

    if host.HAS_MDISTILLER:
        register()
        return dict(host.host_distillers())
    return {**STANDALONE_BASELINES, **METHODS}


def host_trainers() -> Dict[str, type]:
    """SOLVER.TRAINER -> mdistiller's trainer class (with ``align``); empty without mdistiller."""
    register()
    return dict(host.host_trainer_dict())

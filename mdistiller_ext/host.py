"""The host layer: the only module that knows whether mdistiller is installed.

With mdistiller importable (and MDISTILLER_EXT_STANDALONE unset), everything here is the host's
own object and ``register()`` adds this project's methods to it. Otherwise the host-compatible
implementations in ``mdistiller_ext.standalone`` stand in with the same names and contracts.
"""
import importlib.util
import os
from typing import Dict

from yacs.config import CfgNode

from . import config

# methods that only the real host implements (feature distillers need its trainers and data)
HOST_ONLY_METHODS = ("AT", "OFD", "RKD", "FITNET", "KDSVD", "CRD", "NST", "PKT", "SP", "VID", "REVIEWKD")


def _use_host() -> bool:
    if os.environ.get("MDISTILLER_EXT_STANDALONE", "") not in ("", "0"):
        return False
    return importlib.util.find_spec("mdistiller") is not None


HAS_MDISTILLER = _use_host()

if HAS_MDISTILLER:
    from mdistiller.distillers import distiller_dict as _host_distillers
    from mdistiller.distillers._base import Distiller, Vanilla
    from mdistiller.engine import trainer_dict as _host_trainers
    from mdistiller.engine.cfg import CFG as _HOST_CFG
    from mdistiller.models import cifar_model_dict, imagenet_model_dict
else:
    from .standalone.cfg import CFG as _HOST_CFG

    _host_distillers: Dict[str, type] = {}
    _host_trainers: Dict[str, type] = {}

    def __getattr__(name: str):
        """The stand-ins' torch-based pieces load on first use, so that importing the package (and
        ``tools/train.py --help``) does not pay for torch where mdistiller is absent."""
        if name in ("Distiller", "Vanilla"):
            from .standalone import _base

            return getattr(_base, name)
        if name in ("cifar_model_dict", "imagenet_model_dict"):
            from .standalone import models

            return getattr(models, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["HAS_MDISTILLER", "Distiller", "Vanilla", "cifar_model_dict", "imagenet_model_dict",
           "register", "base_cfg", "distiller_registry", "host_trainers"]

_registered = False


def register() -> None:
    """Add DHKD/AEKT (and the CFG nodes, and the gradient-alignment trainer) to the host. Idempotent."""
    global _registered
    config.add_nodes(_HOST_CFG)
    if not HAS_MDISTILLER or _registered:
        return
    from .distillers import METHODS
    from .engine.host_trainer import make_align_trainer

    for name, cls in METHODS.items():
        _host_distillers.setdefault(name, cls)
    _host_trainers.setdefault("align", make_align_trainer(_host_trainers["base"]))
    _registered = True


def base_cfg() -> CfgNode:
    """A fresh, unfrozen copy of the host's default CFG with this project's nodes."""
    register()
    return _HOST_CFG.clone()


def distiller_registry() -> Dict[str, type]:
    """DISTILLER.TYPE -> class: the host's dict (plus ours) or the standalone set."""
    from .distillers import METHODS, STANDALONE_BASELINES

    if HAS_MDISTILLER:
        register()
        return dict(_host_distillers)
    return {**STANDALONE_BASELINES, **METHODS}


def host_trainers() -> Dict[str, type]:
    register()
    return dict(_host_trainers)

"""The host layer: the only module that knows whether mdistiller is installed.

With mdistiller importable (and MDISTILLER_EXT_STANDALONE unset), everything here is the host's
own object; ``registration.register()`` adds this project's methods to it. Otherwise the
host-compatible implementations in ``mdistiller_ext.host.standalone`` stand in with the same names
and contracts. This module imports nothing else of the package but the stand-ins.
"""
import importlib.util
import os
from typing import Dict

from yacs.config import CfgNode

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
    from mdistiller_ext.host.standalone.cfg import CFG as _HOST_CFG

    _host_distillers: Dict[str, type] = {}
    _host_trainers: Dict[str, type] = {}

    def __getattr__(name: str):
        """The stand-ins' torch-based pieces load on first use, so that importing the package (and
        ``tools/train.py --help``) does not pay for torch where mdistiller is absent."""
        if name in ("Distiller", "Vanilla"):
            from mdistiller_ext.host.standalone import _base

            return getattr(_base, name)
        if name in ("cifar_model_dict", "imagenet_model_dict"):
            from mdistiller_ext.host.standalone import models

            return getattr(models, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["HAS_MDISTILLER", "Distiller", "Vanilla", "cifar_model_dict", "imagenet_model_dict", "host_cfg",
           "host_distillers", "host_trainer_dict"]


def host_cfg() -> CfgNode:
    """The host's own global CFG object (registration adds this project's nodes to it)."""
    return _HOST_CFG


def host_distillers() -> Dict[str, type]:
    """mdistiller's own ``distiller_dict`` object (empty without mdistiller), for registration to fill."""
    return _host_distillers


def host_trainer_dict() -> Dict[str, type]:
    """mdistiller's own ``trainer_dict`` object (empty without mdistiller), for registration to fill."""
    return _host_trainers

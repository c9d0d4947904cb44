"""Registration: fills the method registry (the built-in method modules, then plug-ins) and adds every
registered method to mdistiller when it is installed: its class to ``distiller_dict``, its config node
(and EXT) to ``CFG``, and the ``align`` trainer to ``trainer_dict`` (idempotent, no patching); and
what a config is built from afterwards: the full default CFG, the DISTILLER.TYPE -> class table, the
host's trainers. ``import mdistiller_ext`` calls ``register()``.
"""
import os
from typing import Dict, Sequence

from yacs.config import CfgNode

from mdistiller_ext import config, methods, registry  # noqa: F401  (importing methods registers the built-ins)

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host.plugins import PLUGINS_ENV, load_plugins

def add_plugins(specs: Sequence[str]) -> None:
    """``--plugin`` of the command-line tools: load now and name in the environment for child processes."""
    specs = [os.path.abspath(s) if os.path.isfile(s) else s for s in specs]
    current = [s for s in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if s]
    os.environ[PLUGINS_ENV] = os.pathsep.join(current + [s for s in specs if s not in current])
    register()


def all_nodes() -> Dict:
    """Every node this project adds to the host's CFG: EXT and each registered method's."""
    load_plugins()
    return {**registry.nodes(), **config.EXT_NODE}


def register() -> None:
    """Load plug-ins (through ``all_nodes``); add every registered method (and the CFG nodes, and the
    alignment trainer) to the host. Idempotent."""
    config.add_nodes(host.host_cfg(), all_nodes())
    config.add_keys(host.host_cfg(), registry.host_node_keys())
    if not host.HAS_MDISTILLER:
        return
    distillers, trainers = host.host_distillers(), host.host_trainer_dict()
    for m in registry.methods():
        if m.distiller is not None and not m.host_provides:
            distillers.setdefault(m.name, m.distiller)
    if "align" not in trainers:
        from mdistiller_ext.engine.host_trainer import make_align_trainer

        trainers["align"] = make_align_trainer(trainers["base"])


def base_cfg() -> CfgNode:
    """A fresh, unfrozen copy of the host's default CFG with every registered node."""
    register()
    return host.host_cfg().clone()


def distiller_registry() -> Dict[str, type]:
    """DISTILLER.TYPE -> class: mdistiller's dict (with ours added) or, without it, the registry's classes."""
    register()
    if host.HAS_MDISTILLER:
        return dict(host.host_distillers())
    return {m.name: m.distiller for m in registry.methods() if m.distiller is not None}


def host_trainers() -> Dict[str, type]:
    """SOLVER.TRAINER -> mdistiller's trainer class (with ``align``); empty without mdistiller."""
    register()
    return dict(host.host_trainer_dict())

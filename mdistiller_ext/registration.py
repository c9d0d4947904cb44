"""Registration: fills the method registry (the built-in method modules, then plug-ins) and adds every
registered method to mdistiller when it is installed: its class to ``distiller_dict``, its config node
(and EXT) to ``CFG``, and the ``align`` trainer to ``trainer_dict`` (idempotent, no patching).

Plug-ins are method modules outside the package, named in MDISTILLER_EXT_PLUGINS (a file path or a
module name; several separated by ``os.pathsep``), by ``--plugin`` on the command-line tools (which
sets that variable, so runs they start see the plug-in too), or by an installed package's entry point
in the group ``mdistiller_ext.methods``. ``import mdistiller_ext`` calls ``register()``.
"""
import importlib
import importlib.util
import os
import sys
from typing import Dict, List, Sequence

from yacs.config import CfgNode

from . import config, host, methods, registry  # noqa: F401  (importing methods registers the built-ins)
from .errors import UserError

PLUGINS_ENV = "MDISTILLER_EXT_PLUGINS"
ENTRY_POINT_GROUP = "mdistiller_ext.methods"
_loaded: Dict[str, bool] = {}  # plug-ins imported in this process (a spec, or "entry points" once for all)


def _load_one(spec: str) -> None:
    if spec in _loaded:
        return
    try:
        if spec.endswith(".py") or os.sep in spec:
            if not os.path.isfile(spec):
                raise UserError(f"plug-in {spec}: no such file; give a method module's path or module name")
            name = "mdistiller_ext_plugin_" + os.path.splitext(os.path.basename(spec))[0]
            module_spec = importlib.util.spec_from_file_location(name, spec)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except UserError:
        raise
    except Exception as e:  # a plug-in's own error: name the plug-in, keep the first line
        raise UserError(f"plug-in {spec} failed to load: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    _loaded[spec] = True


def _entry_points() -> List:
    from importlib.metadata import entry_points

    found = entry_points()
    return list(found.select(group=ENTRY_POINT_GROUP) if hasattr(found, "select") else found.get(ENTRY_POINT_GROUP, []))


def load_plugins() -> None:
    """Import the plug-ins named in the environment (read each time: ``--plugin`` adds to it) and, once
    per process, those of installed packages' entry points."""
    for spec in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        _load_one(spec)
    if "entry points" not in _loaded:
        for ep in _entry_points():
            ep.load()
        _loaded["entry points"] = True


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
    if not host.HAS_MDISTILLER:
        return
    distillers, trainers = host.host_distillers(), host.host_trainer_dict()
    for m in registry.methods():
        if m.distiller is not None and not m.host_provides:
            distillers.setdefault(m.name, m.distiller)
    if "align" not in trainers:
        from .engine.host_trainer import make_align_trainer

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

"""Plug-ins: method modules outside the package, named in MDISTILLER_EXT_PLUGINS (a file path or a
module name; several separated by ``os.pathsep``), by ``--plugin`` on the command-line tools (which
sets that variable, so runs they start see the plug-in too), or by an installed package's entry point
in the group ``mdistiller_ext.methods``. Importing one registers its methods (``@register_method``).
"""
import importlib
import importlib.util
import os
import sys
from typing import Dict, List

from mdistiller_ext.errors import UserError

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

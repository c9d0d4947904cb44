"""The built-in methods, one module each. Importing this package imports every module in it, so a
method's file is all it takes to add one (a module that registers nothing, such as ``losses`` or
``heads``, is a helper); nothing keeps a list of them that could leave one out."""
import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

"""The method registry: one ``Method`` per DISTILLER.TYPE, filled by the ``register_method`` decorator.

A method module (``mdistiller_ext/methods/<name>.py``, or a plug-in file) holds its Distiller, its
config node with defaults, its validation rules and its recipe, and registers them here in one
decorator. Config defaults, validation, builders, config generation, the comparison tool, the
benchmarks and the README's option tables read this registry; nothing else lists methods.
This module imports no torch: the registry is plain data.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from yacs.config import CfgNode

from mdistiller_ext.errors import UserError
from mdistiller_ext.rules import Rule

# recipe(dataset, pair name, pair) -> the config sections this method sets on top of the pair's base
Recipe = Callable[[str, str, object], Dict[str, dict]]


@dataclass(frozen=True)
class Method:
    name: str                                   # DISTILLER.TYPE (and the config node's name, if it has one)
    distiller: Optional[type]                   # None: only mdistiller implements it
    slug: str                                   # configs/<dataset>/<slug>/<pair>.yaml
    summary: str = ""                           # one line for the README's method table
    node: Optional[Callable[[], CfgNode]] = None  # this project's config node with its defaults (None: the host's)
    # keys this project adds to the host's node of this name, with their defaults (KD.LOGIT_STAND): this
    # engine reads them; mdistiller's own classes do not, so its route refuses them away from the default
    host_node_keys: Dict[str, object] = field(default_factory=dict)
    rules: Tuple[Rule, ...] = ()
    recipe: Optional[Recipe] = None
    datasets: Tuple[str, ...] = ("cifar100", "cifar10", "imagenet")  # where the recipe applies
    ablations: Dict[str, Dict[str, dict]] = field(default_factory=dict)  # name -> config patch on the recipe
    ablation_pair: str = ""                     # CIFAR-100 pair the ablation configs use
    host_provides: bool = False                 # mdistiller has its own class of this name; with it installed that one runs
    needs_teacher: bool = True
    needs_num_data: bool = False                # constructed as cls(student, teacher, cfg, num_data) (CRD)
    host_data: bool = False                     # on mdistiller's route its own get_dataset builds the loaders (CRD)
    check_config: Optional[Callable[[CfgNode, bool], None]] = None  # rules beyond one key: (cfg, this engine runs it)
    check_models: Optional[Callable[[CfgNode, object, object], None]] = None  # (cfg, student, teacher) before building
    builtin: bool = True                        # shipped with the package; False for plug-ins (set by the decorator)

    def covers(self, dataset: str) -> bool:
        """Whether the method has a recipe for ``dataset`` (configs can be generated for it)."""
        return self.recipe is not None and dataset in self.datasets


_METHODS: Dict[str, Method] = {}


def add(method: Method) -> Method:
    """Register ``method``; registering the same distiller class again is a no-op (re-imports)."""
    old = _METHODS.get(method.name)
    if old is not None and _origin(old) != _origin(method):
        raise UserError(f"method {method.name} is registered twice ({_origin(old)} and {_origin(method)}); "
                        "give the new method another name")
    _METHODS.setdefault(method.name, method)
    return _METHODS[method.name]


def _origin(m: Method) -> str:
    cls = m.distiller
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else f"host-only {m.slug}"


def register_method(name: str, *, slug: str = "", **fields) -> Callable[[Optional[type]], Optional[type]]:
    """Class decorator: ``@register_method("DHKD", node=..., rules=..., recipe=...)``."""
    def decorate(cls: Optional[type]) -> Optional[type]:
        builtin = cls is not None and cls.__module__.startswith(__package__ + ".methods.")
        add(Method(name=name, distiller=cls, slug=slug or name.lower(), builtin=builtin, **fields))
        return cls

    return decorate


def methods(builtin_only: bool = False) -> List[Method]:
    return [m for m in _METHODS.values() if m.builtin or not builtin_only]


def get(name: str) -> Method:
    if name not in _METHODS:
        raise UserError(f"unknown DISTILLER.TYPE {name!r}; choose one of: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def find(name: str) -> Optional[Method]:
    return _METHODS.get(name)


def by_slug(slug: str) -> Optional[Method]:
    return next((m for m in _METHODS.values() if m.slug == slug), None)


def nodes() -> Dict[str, Callable[[], CfgNode]]:
    return {m.name: m.node for m in _METHODS.values() if m.node is not None}


def host_node_keys() -> Dict[str, Dict[str, object]]:
    """node name -> {key: default} that this project adds to nodes the host defines."""
    return {m.name: dict(m.host_node_keys) for m in _METHODS.values() if m.host_node_keys}


def rules(builtin_only: bool = False) -> List[Rule]:
    return [r for m in methods(builtin_only) for r in m.rules]


def slugs(dataset: str, builtin_only: bool = True) -> List[str]:
    """Slugs of the methods with a recipe for ``dataset`` (in registration order)."""
    return [m.slug for m in methods(builtin_only) if m.covers(dataset)]

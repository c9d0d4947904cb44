"""The built-in methods, one module each; importing this package registers them (in this order:
the order of generated configs and of the README's tables)."""
from . import vanilla, kd, dkd, crd, reviewkd, dhkd, aekt  # noqa: F401

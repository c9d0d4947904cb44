"""mdistiller_ext: DHKD and AEKT for the mdistiller knowledge-distillation toolbox.

Importing the package registers the methods with mdistiller when it is installed (idempotent):
``DHKD`` and ``AEKT`` in ``mdistiller.distillers.distiller_dict``, their CFG nodes (and ``EXT``)
in ``mdistiller.engine.cfg.CFG``, and the ``align`` trainer in ``mdistiller.engine.trainer_dict``.
Without mdistiller the same names come from ``mdistiller_ext.standalone``.
"""
from .host import HAS_MDISTILLER
from .registration import register

register()

__all__ = ["HAS_MDISTILLER", "register"]
__version__ = "0.1.0"

"""mdistiller_ext: DHKD and AEKT for the mdistiller knowledge-distillation toolbox.

Importing the package fills the method registry (``mdistiller_ext.methods``, then any plug-ins)
and, when mdistiller is installed, registers every method with it (idempotent): the classes in
``mdistiller.distillers.distiller_dict``, their CFG nodes (and ``EXT``) in
``mdistiller.engine.cfg.CFG``, and the ``align`` trainer in ``mdistiller.engine.trainer_dict``.
Without mdistiller the same names come from ``mdistiller_ext.host.standalone``.
"""
from mdistiller_ext.errors import UserError
from mdistiller_ext.host.adapter import HAS_MDISTILLER
from mdistiller_ext.host.registration import register

try:
    register()
except UserError:
    # a plug-in that fails to load: every use of the registry calls register() again and raises this
    # error there, where the command-line tools turn it into their one-line message
    pass

__all__ = ["HAS_MDISTILLER", "register"]
__version__ = "0.1.0"

"""Vanilla training (DISTILLER.TYPE NONE): cross-entropy on one network, the host's ``Vanilla``.

Used for the CE-only baseline of a student and for training teachers (configs/<dataset>/vanilla/,
which generation writes per teacher, not per pair).
"""
from mdistiller_ext.host import adapter as host
from mdistiller_ext.registry import Method, add

add(Method("NONE", host.Vanilla, slug="vanilla", summary="cross-entropy only (students' baseline, teachers)",
           host_provides=True, needs_teacher=False))

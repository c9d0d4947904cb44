"""DHKD's gradient alignment: a one-sided, PCGrad-style projection of the KD gradient.

g_ce and g_kd are the gradients of loss_ce and loss_kd over all learnable parameters (a
parameter a loss does not reach counts as zeros). If <g_kd, g_ce> < 0, the component of g_kd
along g_ce is removed; g_ce is never changed. The sum is written into .grad.
"""
from typing import Callable, Dict, List, Optional, Sequence

import torch

from mdistiller_ext.methods.base import require_split, split_by_names


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """The inner product of two parameter-shaped lists, in float64: one batched multiply (foreach) and
    one sum over the flattened products, not a kernel per tensor pair."""
    products = torch._foreach_mul([x.double() for x in a], [y.double() for y in b])
    return torch.cat([p.reshape(-1) for p in products]).sum()


def project_conflicting(g_kd: List[torch.Tensor], g_ce: List[torch.Tensor]) -> List[torch.Tensor]:
    """g_kd - min(<g_kd, g_ce>, 0) / ||g_ce||^2 * g_ce, with one global inner product.

    A zero g_ce leaves g_kd unchanged. Computed without host synchronisation.
    """
    inner = _dot(g_kd, g_ce)
    norm2 = _dot(g_ce, g_ce)
    coef = torch.where((inner < 0) & (norm2 > 0), inner / norm2.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(inner))
    return [k - coef.to(k.dtype) * c for k, c in zip(g_kd, g_ce)]


def _grads(loss: torch.Tensor, params: List[torch.Tensor], retain: bool) -> List[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def aligned_backward(losses: Dict[str, torch.Tensor], params: List[torch.Tensor],
                     reduce: Optional[Callable[[List[torch.Tensor]], List[torch.Tensor]]] = None,
                     split: Callable = split_by_names) -> torch.Tensor:
    """Two backward passes (task side, distillation side), projection, and .grad = g_ce + g_kd'.

    ``split`` is the distiller's declared ``split_losses`` (by default loss_kd is the distillation
    side and every other entry the task side, added to g_ce unprojected). ``reduce`` (data
    parallel: an all-reduce mean) is applied to both gradients before the projection, so the
    projection uses the global gradients. Returns the total loss.
    """
    params = [p for p in params if p.requires_grad]
    ce, kd = require_split(split(losses), losses)
    kd_reaches = kd.requires_grad
    g_ce = _grads(ce, params, retain=kd_reaches)
    g_kd = _grads(kd, params, retain=False) if kd_reaches else [torch.zeros_like(p) for p in params]
    if reduce is not None:
        reduce(g_ce)
        reduce(g_kd)
    for p, g in zip(params, [c + k for c, k in zip(g_ce, project_conflicting(g_kd, g_ce))]):
        p.grad = g
    return (ce + kd).detach()

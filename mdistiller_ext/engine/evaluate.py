"""Test-split evaluation of every head of a distiller: the engine's validation and tools/eval.py."""
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller_ext.methods.base import hook
from mdistiller_ext.engine.step import autocast_context


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    k = min(max(ks), logits.shape[1])
    hit = logits.topk(k, dim=1).indices.eq(target[:, None])
    return torch.stack([hit[:, :min(kk, k)].any(dim=1).sum() for kk in ks]).float()


@torch.no_grad()
def evaluate(distiller: nn.Module, batches: Iterable, prepare: Callable, amp: Optional[torch.dtype] = None,
             progress: Optional[Callable[[], None]] = None,
             reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Dict[str, float]:
    """test_acc, test_acc_top5, test_loss of the main head and test_acc_<head> (and _top5) of the others.

    Sums stay on the device; the host reads them once at the end. ``reduce`` (torch.distributed: a sum
    over processes) joins the sums of processes that each evaluated a shard of the split.
    """
    distiller.eval()
    heads_fn = hook(distiller, "forward_test_heads")
    sums: Dict[str, torch.Tensor] = {}
    loss_sum = None
    n = 0
    for batch in batches:
        image, target = prepare(batch)
        with autocast_context(image.device.type, amp):
            heads = heads_fn(image)
        loss = F.cross_entropy(heads["main"].float(), target, reduction="sum")
        loss_sum = loss if loss_sum is None else loss_sum + loss
        for name, logits in heads.items():
            sums[name] = sums.get(name, 0) + topk_correct(logits, target)
        n += target.shape[0]
        if progress is not None:
            progress()
    out = OrderedDict()
    if reduce is not None:  # every process ends with the whole split's numbers
        names = sorted(sums)
        device = sums[names[0]].device if names else torch.device("cpu")
        flat = torch.cat([sums[k] for k in names] + [torch.stack([torch.as_tensor(loss_sum if loss_sum is not None else 0.0,
                                                                                  device=device, dtype=torch.float32),
                                                                  torch.tensor(float(n), device=device)])])
        flat = reduce(flat)
        sums = {k: flat[2 * i:2 * i + 2] for i, k in enumerate(names)}
        loss_sum, n = flat[-2], int(flat[-1].item())
    if not sums:
        return out
    scale = 100.0 / max(n, 1)
    out["test_acc"], out["test_acc_top5"] = (sums["main"] * scale).tolist()
    out["test_loss"] = float(loss_sum) / max(n, 1)
    for name, s in sums.items():
        if name != "main":
            top1, top5 = (s * scale).tolist()
            out[f"test_acc_{name}"] = top1
            out[f"test_acc_{name}_top5"] = top5
    return out

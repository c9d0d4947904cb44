"""The gradient-conflict probe (EXT.GRAD_PROBE_EVERY): how the task and distillation gradients meet.

Every N steps it takes the gradients of the task loss and of the distillation loss (the split
that gradient alignment uses) separately on the student's shared parameters, i.e. every student
parameter except its classifier, and records their cosine similarity and the norm ratio
||g_kd|| / ||g_ce||. It only reads gradients (``autograd.grad`` with the graph retained, nothing
written into ``.grad``), so training is unchanged bitwise; values stay on the device until the
epoch ends, so it adds no host synchronisation. Off (N = 0) it is never constructed.
"""
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from mdistiller_ext.methods.heads import classifier_of
from mdistiller_ext.methods.base import split_by_names


def shared_parameters(student: nn.Module) -> List[nn.Parameter]:
    """The student's parameters that both heads' losses reach: all but its final classifier's."""
    head = {id(p) for p in classifier_of(student).parameters()}
    return [p for p in student.parameters() if p.requires_grad and id(p) not in head]


def conflict(ce: torch.Tensor, kd: torch.Tensor, params: List[torch.Tensor]) -> torch.Tensor:
    """[cosine(g_ce, g_kd), ||g_kd|| / ||g_ce||] over ``params`` (float64); NaN where a gradient is zero."""
    def grads(loss):
        if not loss.requires_grad:
            return [torch.zeros_like(p) for p in params]
        gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]

    g_ce, g_kd = grads(ce), grads(kd)
    dot = sum((a.double() * b.double()).sum() for a, b in zip(g_ce, g_kd))
    n_ce = torch.sqrt(sum(a.double().pow(2).sum() for a in g_ce))
    n_kd = torch.sqrt(sum(b.double().pow(2).sum() for b in g_kd))
    valid = (n_ce > 0) & (n_kd > 0)
    nan = torch.full_like(dot, float("nan"))
    return torch.stack([torch.where(valid, dot / (n_ce * n_kd), nan), torch.where(valid, n_kd / n_ce, nan)])


class GradProbe:
    """Measures every ``every`` steps; ``take_epoch()`` returns the epoch's records and their means."""

    def __init__(self, every: int, student: nn.Module, split: Callable = split_by_names,
                 scaler: Optional[torch.amp.GradScaler] = None) -> None:
        self.every = every
        self.split = split  # the distiller's declared split_losses
        # fp16: both losses are multiplied by the loss scale before differentiating, as training's backward
        # is, so small gradients do not underflow; the cosine and the norm ratio do not change with the scale
        self.scaler = scaler
        self.params = shared_parameters(student)
        self._steps: List[int] = []
        self._values: List[torch.Tensor] = []

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(self, step: int, losses: Dict[str, torch.Tensor]) -> None:
        split = self.split(losses)
        if split is None:
            return  # nothing to split (vanilla training)
        ce, kd = split
        if self.scaler is not None:
            ce, kd = self.scaler.scale(ce), self.scaler.scale(kd)
        self._steps.append(step)
        self._values.append(conflict(ce, kd, self.params).detach())

    def epoch_state(self) -> Dict[str, object]:
        """What this epoch has measured so far (an in-epoch snapshot holds it)."""
        return {"steps": list(self._steps), "values": [v.detach().cpu() for v in self._values]}

    def load_epoch_state(self, state: Dict[str, object]) -> None:
        device = self.params[0].device if self.params else torch.device("cpu")
        self._steps, self._values = list(state["steps"]), [v.to(device) for v in state["values"]]

    def take_epoch(self) -> Optional[Dict[str, object]]:
        """{"steps", "cos", "ratio"} lists and the means over the finite values, then reset (one sync)."""
        if not self._values:
            return None
        values = torch.stack(self._values).cpu().tolist()
        steps, self._steps, self._values = self._steps, [], []
        cos = [v[0] for v in values]
        ratio = [v[1] for v in values]

        def mean(xs):
            finite = [x for x in xs if x == x]
            return sum(finite) / len(finite) if finite else float("nan")

        return {"steps": steps, "cos": cos, "ratio": ratio, "mean_cos": mean(cos), "mean_ratio": mean(ratio)}

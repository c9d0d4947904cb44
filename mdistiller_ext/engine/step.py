"""One training step, shared by this engine and the host-side ``align`` trainer: forward, losses,
backward (plain, or the gradient-alignment pair), the non-finite guard and the optimizer step."""
import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from mdistiller_ext.config import NONFINITE_MODES
from mdistiller_ext.methods.base import hook, split_by_names
from mdistiller_ext.engine.alignment import aligned_backward

Losses = Dict[str, torch.Tensor]


def autocast_context(device_type: str, amp: Optional[torch.dtype]):
    return torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext()


@dataclass
class StepSetup:
    """What every step of a run shares: the parameters, how gradients are made, precision."""
    params: List[nn.Parameter]
    align: bool = False                 # SOLVER.TRAINER align: the gradient-alignment pair of backward passes
    amp: Optional[torch.dtype] = None   # autocast dtype (None: float32)
    scaler: Optional[torch.amp.GradScaler] = None  # fp16 only
    reduce: Optional[Callable[[List[torch.Tensor]], List[torch.Tensor]]] = None  # DDP + align: all-reduce mean
    split: Callable[[Losses], Optional[Tuple[torch.Tensor, torch.Tensor]]] = split_by_names  # the distiller's split_losses

    @classmethod
    def for_distiller(cls, distiller: nn.Module, **kwargs) -> "StepSetup":
        return cls(list(distiller.get_learnable_parameters()), split=hook(distiller, "split_losses"), **kwargs)


def forward_backward(model: nn.Module, image: torch.Tensor, target: torch.Tensor, epoch: int, setup: StepSetup,
                     probe: Optional[Callable[[Losses], None]] = None,
                     extra: Optional[Dict[str, object]] = None) -> Tuple[torch.Tensor, Losses, torch.Tensor]:
    """One step's forward and gradients: a plain (or DDP) backward of the summed losses, or the
    gradient-alignment pair of backward passes (under DDP's no_sync, with ``setup.reduce`` averaging
    both gradients over processes). ``probe``, if given, reads the losses before the backward
    (it must not write gradients). ``extra`` are further keyword arguments of forward_train (this
    engine's ``progress`` and cached ``teacher_logits``). Returns (logits, losses, total loss)."""
    scaler = setup.scaler
    sync_off = model.no_sync() if (setup.align and hasattr(model, "no_sync")) else contextlib.nullcontext()
    with sync_off:
        with autocast_context(image.device.type, setup.amp):
            logits, losses = model(image=image, target=target, epoch=epoch, **(extra or {}))
        if probe is not None:
            probe(losses)
        if setup.align:
            scaled = losses if scaler is None else {k: scaler.scale(v) for k, v in losses.items()}
            total = aligned_backward(scaled, setup.params, reduce=setup.reduce, split=setup.split)
            if scaler is not None:  # the unscaled sum, without reading the scale on the CPU (a sync)
                total = sum(v.mean() for v in losses.values()).detach()
        else:
            total = sum(v.mean() for v in losses.values())
            (total if scaler is None else scaler.scale(total)).backward()
    return logits, losses, total.detach()


class NonFiniteGuard:
    """EXT.NONFINITE: watches every step's losses and gradient norm for NaN/inf.

    ``stop``: records the first bad step on the device (no host synchronisation per step); the
    trainer asks ``first_failure()`` every so often and stops there. ``skip``: drops each bad step
    before the optimizer sees it (one synchronisation per step) and counts it.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        self.skip = NONFINITE_MODES[mode]
        self.skipped = 0
        self.device = device
        self.reset()

    def reset(self) -> None:
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self._bad_mask: Optional[torch.Tensor] = None
        self._names: List[str] = []

    def observe(self, step: int, losses: Losses, params: List[nn.Parameter], scaled: bool) -> bool:
        """Record this step; True if it must be dropped (skip mode and something is not finite)."""
        self._names = list(losses) + ["gradient"]
        grads = [p.grad for p in params if p.grad is not None]
        # with fp16 the scaler owns overflowing gradients (it skips those steps itself)
        if grads and not scaled:
            gnorm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([g.float() for g in grads])))
        else:
            gnorm = torch.zeros((), device=self.device)
        flags = torch.cat([~torch.isfinite(torch.stack([v.detach().float().mean() for v in losses.values()])),
                           (~torch.isfinite(gnorm))[None]])
        first = (self._bad_step < 0) & flags.any()
        self._bad_step = torch.where(first, step, self._bad_step)
        self._bad_mask = flags if self._bad_mask is None else torch.where(first, flags, self._bad_mask)
        if self.skip and bool(flags.any()):
            self.skipped += 1
            return True
        return False

    def first_failure(self) -> Optional[Tuple[int, List[str]]]:
        """(step, names of what was not finite) of the first bad step, or None (stop mode; syncs once)."""
        if self.skip or self._bad_mask is None:
            return None
        step = int(self._bad_step)
        if step < 0:
            return None
        return step, [n for n, b in zip(self._names, self._bad_mask.tolist()) if b]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, image: torch.Tensor, target: torch.Tensor,
               epoch: int, setup: StepSetup, step: int = 0, guard: Optional[NonFiniteGuard] = None,
               probe: Optional[Callable[[Losses], None]] = None,
               extra: Optional[Dict[str, object]] = None) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """zero_grad, forward_backward, the guard, the optimizer step. Returns (logits, total loss), or None
    where the guard dropped the step."""
    optimizer.zero_grad(set_to_none=True)
    logits, losses, total = forward_backward(model, image, target, epoch, setup, probe, extra)
    if guard is not None and guard.observe(step, losses, setup.params, setup.scaler is not None):
        return None
    if setup.scaler is not None:
        setup.scaler.step(optimizer)
        setup.scaler.update()
    else:
        optimizer.step()
    return logits, total

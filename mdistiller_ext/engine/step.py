"""One training step's forward and gradients, shared by this engine and the host-side align trainer."""
import contextlib
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
from yacs.config import CfgNode

from .alignment import aligned_backward


def autocast_dtype(cfg: CfgNode, device: torch.device) -> Optional[torch.dtype]:
    """EXT.AMP: auto is bf16 on CUDA devices that support it and off elsewhere."""
    amp = cfg.EXT.AMP
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast_context(device_type: str, amp: Optional[torch.dtype]):
    return torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext()


def use_channels_last(cfg: CfgNode, device: torch.device) -> bool:
    return cfg.EXT.CHANNELS_LAST == "on" or (cfg.EXT.CHANNELS_LAST == "auto" and device.type == "cuda")


def forward_backward(model: nn.Module, params: List[nn.Parameter], image: torch.Tensor, target: torch.Tensor,
                     epoch: int, align: bool, amp: Optional[torch.dtype], scaler=None, reduce=None,
                     probe: Optional[Callable[[Dict[str, torch.Tensor]], None]] = None):
    """One step's forward and gradients: a plain (or DDP) backward of the summed losses, or the
    gradient-alignment pair of backward passes (under DDP's no_sync, with ``reduce`` averaging
    both gradients over processes). ``probe``, if given, reads the losses before the backward
    (it must not write gradients). Returns (logits, losses, total loss)."""
    autocast = autocast_context(image.device.type, amp)
    sync_off = model.no_sync() if (align and hasattr(model, "no_sync")) else contextlib.nullcontext()
    with sync_off:
        with autocast:
            logits, losses = model(image=image, target=target, epoch=epoch)
        if probe is not None:
            probe(losses)
        if align:
            scaled = losses if scaler is None else {k: scaler.scale(v) for k, v in losses.items()}
            total = aligned_backward(scaled, params, reduce=reduce)
            if scaler is not None:
                total = total / scaler.get_scale()
        else:
            total = sum(v.mean() for v in losses.values())
            (total if scaler is None else scaler.scale(total)).backward()
    return logits, losses, total.detach()

"""mdistiller's own route (``EXT.ENGINE host``, or ``auto`` for a method only its trainers run)."""
import os
from typing import Optional

import torch
from yacs.config import CfgNode

from mdistiller_ext.host import registration

def train_with_host(cfg: CfgNode, name: str, distiller: torch.nn.Module, train_loader, val_loader,
                    resume: bool, teacher_info: Optional[dict] = None, device: Optional[torch.device] = None) -> float:
    """mdistiller's own route: its trainer (SOLVER.TRAINER) on the distiller wrapped in DataParallel, as
    its tools/train.py does; this project adds only the runtime record and wandb's start, as the host's script."""
    from mdistiller_ext.runs import provenance
    from mdistiller_ext.runs import worklog
    from mdistiller_ext.engine.wandb_log import start_wandb
    from mdistiller_ext.runs.checkpoint import load_safe

    # EXT.DEVICE auto/cuda: every visible GPU, as mdistiller's script does; cuda:N: that GPU alone
    one = device is not None and cfg.EXT.DEVICE.startswith("cuda:")
    distiller = torch.nn.DataParallel(distiller.cuda(device), device_ids=[device.index] if one else None)
    trainer = registration.host_trainers()[cfg.SOLVER.TRAINER](name, distiller, train_loader, val_loader, cfg)
    latest = os.path.join(trainer.log_path, "latest")
    resumed_from = int(load_safe(latest).get("epoch", 0)) if resume and os.path.exists(latest) else None
    info = provenance.describe(f"mdistiller {type(trainer).__name__}", torch.device("cuda", torch.cuda.current_device())
                               if torch.cuda.is_available() else torch.device("cpu"), None, False,
                               "DataLoader (PIL transforms)", "host (mdistiller)", teacher=teacher_info)
    provenance.record(trainer.log_path, info, resumed_from)
    worklog.append(os.path.join(trainer.log_path, "worklog.txt"), provenance.worklog_line(info, resumed_from))
    if cfg.LOG.WANDB and not start_wandb(cfg, name):
        cfg.defrost()
        cfg.LOG.WANDB = False  # as the host's script does when wandb cannot start
        cfg.freeze()
    trainer.train(resume=resume)
    return float(trainer.best_acc)

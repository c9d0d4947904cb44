"""``python tools/train.py --cfg X.yaml [--resume] [KEY VALUE ...]``: the host's CLI, on any device.

With mdistiller installed and CUDA available (EXT.ENGINE auto), the run goes through
mdistiller's own trainers (SOLVER.TRAINER); otherwise through this project's engine. Either way
the run directory is LOG.PREFIX/EXPERIMENT.PROJECT/<name>[,KEY:VALUE...].
"""
import argparse
import hashlib
import os
import sys
from typing import List, Optional

import torch
from yacs.config import CfgNode

from . import host
from .errors import UserError
from .validate import validate


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a student (or a teacher) with mdistiller_ext.")
    p.add_argument("--cfg", required=True, help="yaml config, e.g. configs/cifar100/dhkd/res56_res20.yaml")
    p.add_argument("--resume", action="store_true", help="continue from <run dir>/latest")
    p.add_argument("--force-resume", action="store_true", help="resume even if the config differs from the checkpoint's")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing run directory")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. SOLVER.EPOCHS 10")
    return p.parse_args(argv)


def _key_error(e: Exception) -> str:
    text = str(e.args[0]) if e.args else str(e)
    if text.startswith("Non-existent"):
        return f"unknown config key {text.split(':', 1)[1].strip()}; check its spelling against the README's option tables"
    return text


def load_config(path: str, opts: List[str]) -> CfgNode:
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    if len(opts) % 2:
        raise UserError(f"overrides must come in KEY VALUE pairs; got {len(opts)} words: {' '.join(opts)}")
    cfg = host.base_cfg()
    try:
        cfg.merge_from_file(path)
    except KeyError as e:
        raise UserError(f"{path}: {_key_error(e)}") from None
    except Exception as e:  # yaml syntax errors and type mismatches
        raise UserError(f"{path}: {str(e).splitlines()[0]}") from None
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        # yacs reports unknown keys as KeyError from files and AssertionError from lists
        raise UserError(f"bad override: {_key_error(e)}") from None
    cfg.freeze()
    return cfg


MAX_NAME_BYTES = 200


def _flat(value: str) -> str:
    for sep in {os.sep, "/"}:
        value = value.replace(sep, "_")
    return value


def experiment_name(cfg: CfgNode, opts: List[str]) -> str:
    """The host's naming: EXPERIMENT.NAME (or TAG) plus ',KEY:VALUE' for each override, under PROJECT.

    A path separator in a value (LOG.PREFIX /scratch/runs) becomes '_': the host would nest the run
    directory inside folders named after the value's pieces. A name over MAX_NAME_BYTES keeps its
    head and ends in '...#' and a digest of the whole name."""
    name = cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG
    name += "".join(f",{k}:{_flat(str(v))}" for k, v in zip(opts[::2], opts[1::2]))
    if len(name.encode()) > MAX_NAME_BYTES:
        # file systems refuse names over 255 bytes: keep a readable head and a digest of the whole
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[:MAX_NAME_BYTES - 16].decode(errors="ignore") + f"...#{digest}"
    return os.path.join(cfg.EXPERIMENT.PROJECT, name)


def pick_device(cfg: CfgNode, local_rank: int = 0) -> torch.device:
    want = cfg.EXT.DEVICE
    if want == "auto":
        # under torchrun each process drives the GPU of its LOCAL_RANK
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"config EXT.DEVICE = {want!r} but CUDA is not available; use auto or cpu")
    return torch.device(want)


def use_host_engine(cfg: CfgNode, device: torch.device) -> bool:
    if cfg.EXT.ENGINE == "ext":
        return False
    usable = host.HAS_MDISTILLER and device.type == "cuda"
    if cfg.EXT.ENGINE == "host" and not usable:
        raise UserError("config EXT.ENGINE = 'host' needs mdistiller installed and a CUDA device; use auto or ext")
    return usable


def _check_run_dir(log_path: str, resume: bool, overwrite: bool) -> None:
    from . import worklog

    if resume:
        return
    log = os.path.join(log_path, "worklog.txt")
    if os.path.exists(log) and not overwrite:
        state = "a finished" if worklog.read(log).finished else "an unfinished"
        raise UserError(f"{log_path} already holds {state} run; pass --resume to continue it, --overwrite to start "
                        "again, or set EXPERIMENT.TAG for a new run")
    if os.path.exists(log):
        os.remove(log)
    try:
        os.makedirs(log_path, exist_ok=True)
        probe = os.path.join(log_path, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write the run directory {log_path} ({e.strerror}); set LOG.PREFIX to a writable folder") from None


def run(argv: Optional[List[str]] = None) -> float:
    from .engine.distributed import barrier, init_from_env

    args = parse_args(argv)
    cfg = load_config(args.cfg, args.opts)
    if cfg.EXT.THREADS > 0:
        torch.set_num_threads(cfg.EXT.THREADS)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(cfg, int(os.environ.get("LOCAL_RANK", "0")))
    host_engine = world == 1 and use_host_engine(cfg, device)
    if world > 1 and cfg.EXT.ENGINE == "host":
        raise UserError("config EXT.ENGINE = 'host' cannot run under torchrun (mdistiller uses DataParallel); use auto or ext")
    validate(cfg, standalone_engine=not host_engine)
    if world > 1 and cfg.EXT.GRAD_PROBE_EVERY > 0:
        raise UserError("config EXT.GRAD_PROBE_EVERY runs in a single process; set it to 0 under torchrun")
    dist_info = init_from_env(device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    name = experiment_name(cfg, args.opts)
    log_path = os.path.join(cfg.LOG.PREFIX, name)
    if dist_info.is_main:
        _check_run_dir(log_path, args.resume, args.overwrite)
        with open(os.path.join(log_path, "config.yaml"), "w") as f:
            f.write(cfg.dump())
    barrier()

    from .builders import build_distiller
    from .data import get_dataset

    if cfg.EXT.DETERMINISTIC:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.EXT.SEED)
    generator = torch.Generator()
    generator.manual_seed(cfg.EXT.SEED)

    if host_engine and cfg.DISTILLER.TYPE == "CRD":
        from mdistiller.dataset import get_dataset as host_get_dataset

        train_loader, val_loader, num_data, num_classes = host_get_dataset(cfg)
    else:
        train_loader, val_loader, num_data, num_classes = get_dataset(
            cfg, generator, None if host_engine else device, dist_info.rank, dist_info.world_size)
    distiller, _ = build_distiller(cfg, num_classes, num_data)
    if dist_info.is_main:
        extra = getattr(distiller, "get_extra_parameters", None)
        if extra is not None and cfg.DISTILLER.TYPE != "NONE":  # the host's Vanilla has no such method
            print(f"{cfg.DISTILLER.TYPE} adds {extra():,} training-only parameters (not part of the deployed student)")
        print(f"run directory: {log_path} | engine: {'mdistiller' if host_engine else 'mdistiller_ext'} | device: {device}"
              + (f" x {dist_info.world_size} processes" if dist_info.enabled else ""))

    if host_engine:
        return train_with_host(cfg, name, distiller, train_loader, val_loader, args.resume)
    from .engine.trainer import Trainer

    trainer = Trainer(name, distiller, train_loader, val_loader, cfg, device, force_resume=args.force_resume,
                      dist_info=dist_info)
    return trainer.train(resume=args.resume)


def train_with_host(cfg: CfgNode, name: str, distiller: torch.nn.Module, train_loader, val_loader,
                    resume: bool) -> float:
    """mdistiller's own route: its trainer (SOLVER.TRAINER) on the distiller wrapped in DataParallel, as
    its tools/train.py does; this project adds only the runtime record and wandb's start, as the host's script."""
    from . import provenance, worklog
    from .engine.wandb_log import start_wandb
    from .checkpoint import load_safe

    distiller = torch.nn.DataParallel(distiller.cuda())
    trainer = host.host_trainers()[cfg.SOLVER.TRAINER](name, distiller, train_loader, val_loader, cfg)
    latest = os.path.join(trainer.log_path, "latest")
    resumed_from = int(load_safe(latest).get("epoch", 0)) if resume and os.path.exists(latest) else None
    info = provenance.describe(f"mdistiller {type(trainer).__name__}", torch.device("cuda", torch.cuda.current_device())
                               if torch.cuda.is_available() else torch.device("cpu"), None, False,
                               "DataLoader (PIL transforms)", "host (mdistiller)")
    provenance.record(trainer.log_path, info, resumed_from)
    worklog.append(os.path.join(trainer.log_path, "worklog.txt"), provenance.worklog_line(info, resumed_from))
    if cfg.LOG.WANDB and not start_wandb(cfg, name):
        cfg.defrost()
        cfg.LOG.WANDB = False  # as the host's script does when wandb cannot start
        cfg.freeze()
    trainer.train(resume=resume)
    return float(trainer.best_acc)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        best = run(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is in <run dir>/latest; continue with --resume", file=sys.stderr)
        return 130
    print(f"best accuracy: {best:.2f}")
    return 0

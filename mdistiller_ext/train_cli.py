"""``python tools/train.py --cfg X.yaml [--resume] [KEY VALUE ...]``: the host's CLI, on any device.

With mdistiller installed and CUDA available (EXT.ENGINE auto), the run goes through
mdistiller's own trainers (SOLVER.TRAINER); otherwise through this project's engine. Either way
the run directory is LOG.PREFIX/EXPERIMENT.PROJECT/<name>[,KEY:VALUE...].
"""
from __future__ import annotations

import argparse
import re
import os
import sys
from typing import TYPE_CHECKING, List, Optional, Tuple

from yacs.config import CfgNode

from . import host, registration, registry
from .errors import UserError
from .experiment import experiment_name, load_config  # noqa: F401  (this CLI's public names)

if TYPE_CHECKING:  # torch loads on first use: --help and config errors answer without it
    import torch


KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")  # a config key, e.g. SOLVER.EPOCHS
EPILOG = """\
Flags may come anywhere, before or after the overrides. KEY VALUE overrides set any config key
(e.g. SOLVER.EPOCHS 10 EXT.SEED 1) and name the run directory:
LOG.PREFIX/EXPERIMENT.PROJECT/<TAG>,KEY:VALUE,... This project's own keys (defaults):
"""


def _help_epilog() -> str:
    lines = [EPILOG]
    for node, make in registration.all_nodes().items():
        lines.append("  " + "  ".join(f"{node}.{k}={v!r}" for k, v in make().items()))
    return "\n".join(lines)


def _split_resume(argv: List[str]) -> Tuple[List[str], Optional[str]]:
    """Takes ``--resume [RUN_DIR]`` out of argv: the word after it is a run directory unless it is a
    config key (``--resume SOLVER.EPOCHS 300``) or another flag."""
    out, run_dir, resume = [], None, False
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--resume" or word.startswith("--resume="):
            resume = True
            if "=" in word:
                run_dir = word.split("=", 1)[1]
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-") and not KEY.match(argv[i + 1]):
                run_dir = argv[i + 1]
                i += 1
        else:
            out.append(word)
        i += 1
    return out + (["--resume"] if resume else []), run_dir


def take_plugins(argv: List[str]) -> List[str]:
    """Loads the ``--plugin FILE_OR_MODULE`` method modules named in argv (before anything reads the
    registry: a plug-in adds config keys) and returns argv without them."""
    rest, plugins, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--plugin" and i + 1 < len(argv):
            plugins.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--plugin="):
            plugins.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    if plugins:
        registration.add_plugins(plugins)
    return rest


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    argv = take_plugins(list(sys.argv[1:] if argv is None else argv))
    argv, run_dir = _split_resume(argv)
    p = argparse.ArgumentParser(description="Train a student (or a teacher) with mdistiller_ext.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=_help_epilog() if ("-h" in argv or "--help" in argv) else None)
    p.add_argument("--cfg", help="yaml config, e.g. configs/cifar100/dhkd/res56_res20.yaml (with --resume RUN_DIR: "
                                 "defaults to the run's own config.yaml)")
    p.add_argument("--resume", action="store_true",
                   help="--resume [RUN_DIR]: continue a run from its latest checkpoint; without RUN_DIR the run is "
                        "found from --cfg and the overrides")
    p.add_argument("--force-resume", action="store_true", help="resume even if the config differs from the checkpoint's")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing run directory")
    p.add_argument("--check", action="store_true",
                   help="validate the config and run one forward/backward of the distiller on a fake batch, without "
                        "data, teacher file or output; exit 0, or one line saying what is wrong")
    # take_plugins has consumed these already (a plug-in's keys must exist before parsing); listed for --help
    p.add_argument("--plugin", action="append", metavar="FILE_OR_MODULE",
                   help="load a method module from outside the package (see the README's 'Adding a method'); repeatable")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="overrides, e.g. SOLVER.EPOCHS 10")
    args = p.parse_intermixed_args(argv)
    args.run_dir = run_dir
    if not args.cfg and not run_dir:
        p.error("--cfg is required (or --resume RUN_DIR)")
    return args


def unread_overrides(cfg: CfgNode, opts: List[str]) -> List[str]:
    """Overridden keys of another method's node (KD.TEMPERATURE in a DHKD run): accepted, never read."""
    return [k for k in opts[::2] if "." in k and k.split(".")[0] != cfg.DISTILLER.TYPE
            and registry.find(k.split(".")[0]) is not None]


def _check_run_dir(log_path: str, overwrite: bool) -> None:
    """A fresh run: refuse to mix with an existing run unless --overwrite; check the folder can be written
    (without creating it yet, so that a run failing before its first step leaves nothing behind)."""
    from . import worklog

    log = os.path.join(log_path, "worklog.txt")
    if os.path.exists(log) and not overwrite:
        state = "a finished" if worklog.read(log).finished else "an unfinished"
        raise UserError(f"{log_path} already holds {state} run; pass --resume to continue it, --overwrite to start "
                        "again, or set EXPERIMENT.TAG for a new run")
    existing = os.path.abspath(log_path)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise UserError(f"cannot create the run directory {log_path}: {existing} is a file; set LOG.PREFIX to a folder")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the run directory {log_path} ({existing} is not writable); "
                        "set LOG.PREFIX to a writable folder")


def _start_run_dir(log_path: str, cfg: CfgNode) -> None:
    from .config import write_config

    os.makedirs(log_path, exist_ok=True)
    log = os.path.join(log_path, "worklog.txt")
    if os.path.exists(log):  # --overwrite
        os.remove(log)
    write_config(log_path, cfg)


def resolve_run(args: argparse.Namespace) -> Tuple[CfgNode, str]:
    """(config, run name) of this invocation. ``--resume RUN_DIR`` takes the run's own config.yaml (or
    --cfg) plus the overrides; ``--resume`` alone finds the run from --cfg and the overrides, and, where
    an override such as SOLVER.EPOCHS only extends the run, from the overrides that named it."""
    from .engine.trainer import RESUME_NEUTRAL_KEYS

    if args.run_dir:
        run_dir = os.path.normpath(args.run_dir)
        saved = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(os.path.join(run_dir, "latest")):
            raise UserError(f"--resume {args.run_dir}: no checkpoint {os.path.join(run_dir, 'latest')}; "
                            "give a run directory that finished at least one epoch")
        cfg = load_config(args.cfg or saved, args.opts)
        return cfg, os.path.abspath(run_dir)  # joined to LOG.PREFIX, an absolute name stays itself
    cfg = load_config(args.cfg, args.opts)
    name = experiment_name(cfg, args.opts)
    if not args.resume or os.path.isdir(os.path.join(cfg.LOG.PREFIX, name)):
        return cfg, name
    # the run may have been named with other values of keys that only extend it (SOLVER.EPOCHS, paths, ...)
    def essential(run_name: str) -> List[str]:
        return [part for part in run_name.split(",")
                if not (":" in part and KEY.match(part.split(":", 1)[0]) and part.split(":", 1)[0] in RESUME_NEUTRAL_KEYS)]

    project = os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT)
    siblings = sorted(os.listdir(project)) if os.path.isdir(project) else []
    matches = [d for d in siblings if essential(d) == essential(os.path.basename(name))
               and os.path.isfile(os.path.join(project, d, "latest"))]
    if len(matches) == 1:
        return cfg, os.path.join(cfg.EXPERIMENT.PROJECT, matches[0])
    found = f"; candidates: {', '.join(matches)}" if matches else ""
    raise UserError(f"--resume: no run directory {os.path.join(cfg.LOG.PREFIX, name)}{found}; start without --resume, "
                    "or name the run: --resume RUN_DIR")


def run(argv: Optional[List[str]] = None) -> Optional[float]:
    args = parse_args(argv)  # before torch loads: --help answers at once
    import torch

    from .engine.distributed import barrier, init_from_env
    from .runtime import resolve
    from .validate import validate, validate_values

    if args.check:
        return check(args)
    cfg, name = resolve_run(args)
    for key in unread_overrides(cfg, args.opts):
        print(f"warning: {key} is set, but DISTILLER.TYPE {cfg.DISTILLER.TYPE} does not read the {key.split('.')[0]} "
              "node", file=sys.stderr)
    if cfg.EXT.DETERMINISTIC:  # cuBLAS reads it when CUDA starts: before anything touches CUDA
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.EXT.THREADS > 0:
        torch.set_num_threads(cfg.EXT.THREADS)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    validate_values(cfg)
    rt = resolve(cfg, local_rank=int(os.environ.get("LOCAL_RANK", "0")), world_size=world)
    device, host_engine = rt.device, rt.host
    if int(os.environ.get("RANK", "0")) == 0:
        print(rt.line(), flush=True)  # the run's first line: what every auto became
    validate(cfg, standalone_engine=not host_engine)
    if world > 1 and cfg.EXT.GRAD_PROBE_EVERY > 0:
        raise UserError("config EXT.GRAD_PROBE_EVERY runs in a single process; set it to 0 under torchrun")
    dist_info = init_from_env(device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    log_path = os.path.join(cfg.LOG.PREFIX, name)
    if dist_info.is_main and not args.resume:
        _check_run_dir(log_path, args.overwrite)

    from .builders import build_distiller
    from .data import get_loaders

    if cfg.EXT.DETERMINISTIC:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.EXT.SEED)
    generator = torch.Generator()
    generator.manual_seed(cfg.EXT.SEED)

    method = registry.find(cfg.DISTILLER.TYPE)
    holdout_loader, data_record = None, {}
    if host_engine and method is not None and method.host_data:
        from mdistiller.dataset import get_dataset as host_get_dataset

        train_loader, val_loader, num_data, num_classes = host_get_dataset(cfg)
    else:
        loaders = get_loaders(cfg, generator, None if host_engine else device, dist_info.rank, dist_info.world_size)
        train_loader, val_loader, num_data, num_classes = loaders.train, loaders.test, loaders.num_data, loaders.num_classes
        holdout_loader, data_record = loaders.holdout, loaders.record
    distiller, _ = build_distiller(cfg, num_classes, num_data, host_classes=host_engine)
    has_teacher = method is None or method.needs_teacher
    teacher = None
    if has_teacher:
        from .builders import teacher_path
        from .teachers import describe_teacher

        path = teacher_path(cfg)
        teacher = describe_teacher(path) if path else {"path": "torchvision pretrained (through mdistiller)", "sha256": "n/a"}
    if dist_info.is_main:
        if not args.resume:
            _start_run_dir(log_path, cfg)
        from .methods.base import hook

        extra = hook(distiller, "get_extra_parameters")()
        if extra:
            print(f"{cfg.DISTILLER.TYPE} adds {extra:,} training-only parameters (not part of the deployed student)")
        if teacher is not None:
            from .teachers import summary_line

            print(summary_line(teacher))
        print(f"run directory: {log_path} | engine: {'mdistiller' if host_engine else 'mdistiller_ext'} | device: {device}"
              + (f" x {dist_info.world_size} processes" if dist_info.enabled else ""))
    store = None
    if has_teacher:
        from . import teacher_cache

        store, note = teacher_cache.for_run(cfg, distiller, train_loader, host_engine, teacher,
                                            data_record.get("train_split", {}), rt.precision())
        if has_teacher and dist_info.is_main:
            print(note)
    barrier()

    try:
        if host_engine:
            best = train_with_host(cfg, name, distiller, train_loader, val_loader, args.resume, teacher, device)
        else:
            from .engine.trainer import Trainer

            trainer = Trainer(name, distiller, train_loader, val_loader, cfg, device, force_resume=args.force_resume,
                              dist_info=dist_info, teacher_info=teacher, holdout_loader=holdout_loader,
                              teacher_store=store, data_record=data_record, runtime=rt)
            best = trainer.train(resume=args.resume)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(log_path)) from None
    if cfg.EXT.EXPORT_TEACHER and not has_teacher and dist_info.is_main:
        from .teachers import export_teacher

        export_teacher(log_path, cfg)
    return best


def check(args: argparse.Namespace) -> None:
    """--check: everything a run decides before its first step, on a fake batch; writes nothing."""
    import torch

    from .builders import build_distiller, build_model, teacher_path
    from .data import NUM_CLASSES
    from .runtime import resolve
    from .validate import validate, validate_values

    cfg = load_config(args.cfg or os.path.join(args.run_dir, "config.yaml"), args.opts)
    validate_values(cfg)
    rt = resolve(cfg)
    validate(cfg, standalone_engine=not rt.host)
    classes = NUM_CLASSES.get(cfg.DATASET.TYPE, 200)
    method = registry.find(cfg.DISTILLER.TYPE)
    random_teacher = False
    if method is None or method.needs_teacher:
        try:
            random_teacher = teacher_path(cfg) is None  # ImageNet's pretrained teachers come through mdistiller
            why = "ImageNet's pretrained teacher is not loaded by a check"
        except UserError as e:
            random_teacher, why = True, str(e).split(";")[0]
        if random_teacher:
            print(f"check: no teacher file ({why}); a randomly initialised teacher stands in")
    if random_teacher:
        cfg.defrost()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # the stand-in teacher lives only for the build
            path = os.path.join(tmp, "teacher.pth")
            torch.save({"model": build_model(cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE, classes).state_dict()}, path)
            cfg.EXT.TEACHER_CKPT = path
            distiller, _ = build_distiller(cfg, classes, 64, host_classes=rt.host)
    else:
        distiller, _ = build_distiller(cfg, classes, 64, host_classes=rt.host)
    size = 224 if cfg.DATASET.TYPE == "imagenet" else 32
    g = torch.Generator().manual_seed(0)
    image, target = torch.randn(2, 3, size, size, generator=g), torch.randint(0, classes, (2,), generator=g)
    distiller.train()
    logits, losses = distiller(image=image, target=target, epoch=1, index=torch.arange(2),
                               contrastive_index=torch.zeros(2, 1, dtype=torch.long))
    total = sum(v.mean() for v in losses.values())
    total.backward()
    if not torch.isfinite(total):
        raise UserError(f"check: the fake batch's loss is {float(total)} ({', '.join(losses)})")
    print(f"check passed: {cfg.DISTILLER.TYPE} {cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT} on {cfg.DATASET.TYPE}, "
          f"losses {', '.join(f'{k} {float(v.detach().mean()):.4f}' for k, v in losses.items())}; {rt.line()}")


class Interrupted(Exception):
    pass


def _interrupted_message(log_path: str) -> str:
    latest = os.path.join(log_path, "latest")
    if not os.path.isfile(latest):
        return (f"interrupted before the first epoch finished: {log_path} holds no checkpoint to resume; "
                "start again with --overwrite")
    from .checkpoint import load_safe

    epoch = load_safe(latest).get("epoch", "?")
    saved = "epoch 1 is" if epoch == 1 else f"epochs 1-{epoch} are"
    return f"interrupted: {saved} saved in {latest}; continue with --resume {log_path}"


def train_with_host(cfg: CfgNode, name: str, distiller: torch.nn.Module, train_loader, val_loader,
                    resume: bool, teacher_info: Optional[dict] = None, device: Optional[torch.device] = None) -> float:
    """mdistiller's own route: its trainer (SOLVER.TRAINER) on the distiller wrapped in DataParallel, as
    its tools/train.py does; this project adds only the runtime record and wandb's start, as the host's script."""
    import torch

    from . import provenance, worklog
    from .engine.wandb_log import start_wandb
    from .checkpoint import load_safe

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


def main(argv: Optional[List[str]] = None) -> int:
    try:
        best = run(argv)
        if best is None:
            return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before training started: nothing of the run was written yet
        print("\ninterrupted before training started; nothing to resume", file=sys.stderr)
        return 130
    print(f"best accuracy: {best:.2f}")
    return 0


if __name__ == "__main__":  # python -m mdistiller_ext.train_cli (how the comparison tool starts runs)
    sys.exit(main())

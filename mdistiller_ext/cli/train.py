"""``python tools/train.py --cfg X.yaml [--resume] [KEY VALUE ...]``: the host's CLI, on any device.

The orchestration of one run: the config and its run directory, the runtime (which route, device,
precision), data, distiller and teacher, then this project's engine or mdistiller's trainers
(``engine/runtime.py`` decides; ``host/route.py`` is mdistiller's route). Either way the run directory
is LOG.PREFIX/EXPERIMENT.PROJECT/<name>[,KEY:VALUE...].
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from mdistiller_ext import registry
from mdistiller_ext.cli.train_args import parse_args, unread_keys, unread_warning
from mdistiller_ext.errors import UserError
from mdistiller_ext.runs.directory import check_run_dir, resolve_run, start_run_dir


def run(argv: Optional[List[str]] = None) -> Optional[float]:
    args = parse_args(argv)  # before torch loads: --help answers at once
    import torch

    from mdistiller_ext.engine.distributed import barrier, init_from_env
    from mdistiller_ext.engine.runtime import resolve
    from mdistiller_ext.validate import validate, validate_values

    if args.check:
        from mdistiller_ext.cli.check import check

        return check(args)
    cfg, name = resolve_run(args)
    for key in unread_keys(cfg, args.opts, args.cfg):
        print(unread_warning(cfg, key), file=sys.stderr)
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
        check_run_dir(log_path, args.overwrite)

    from mdistiller_ext.builders import build_distiller
    from mdistiller_ext.data.loaders import get_loaders

    if cfg.EXT.DETERMINISTIC:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.EXT.SEED)
    generator = torch.Generator()
    generator.manual_seed(cfg.EXT.SEED)

    method = registry.find(cfg.DISTILLER.TYPE)
    has_teacher = method is None or method.needs_teacher
    teacher_file = None
    if has_teacher:  # a missing teacher is said before any data is read (or downloaded)
        from mdistiller_ext.builders import teacher_path

        teacher_file = teacher_path(cfg)
    holdout_loader, data_record = None, {}
    if host_engine and method is not None and method.host_data:
        from mdistiller.dataset import get_dataset as host_get_dataset

        train_loader, val_loader, num_data, num_classes = host_get_dataset(cfg)
    else:
        loaders = get_loaders(cfg, generator, None if host_engine else device, dist_info.rank, dist_info.world_size)
        train_loader, val_loader, num_data, num_classes = loaders.train, loaders.test, loaders.num_data, loaders.num_classes
        holdout_loader, data_record = loaders.holdout, loaders.record
    distiller, _ = build_distiller(cfg, num_classes, num_data, host_classes=host_engine)
    teacher = None
    if has_teacher:
        from mdistiller_ext.engine.distributed import all_reduce_sum
        from mdistiller_ext.engine.teacher_accuracy import known_accuracy, refuse_useless
        from mdistiller_ext.runs.teachers import describe_teacher

        teacher = (describe_teacher(teacher_file) if teacher_file
                   else {"path": "torchvision pretrained (through mdistiller)", "sha256": "n/a"})
        # before anything is written: a useless teacher is refused while the run directory is still untouched
        distiller.teacher.to(device)
        teacher = known_accuracy(cfg, teacher, distiller.teacher, val_loader,
                                 lambda b: (b[0].to(device).float(), b[1].to(device)), data_record.get("test_split", {}),
                                 dist_info.is_main, all_reduce_sum if dist_info.enabled else None)
        refuse_useless(cfg, teacher, num_classes)
    if dist_info.is_main:
        if not args.resume:
            start_run_dir(log_path, cfg)
        from mdistiller_ext.methods.base import hook

        extra = hook(distiller, "get_extra_parameters")()
        if extra:
            print(f"{cfg.DISTILLER.TYPE} adds {extra:,} training-only parameters (not part of the deployed student)")
        if teacher is not None:
            from mdistiller_ext.runs.teachers import summary_line

            print(summary_line(teacher))
        print(f"run directory: {log_path} | engine: {'mdistiller' if host_engine else 'mdistiller_ext'} | device: {device}"
              + (f" x {dist_info.world_size} processes" if dist_info.enabled else ""))
    store = None
    if has_teacher:
        from mdistiller_ext.data import teacher_cache

        store, note = teacher_cache.for_run(cfg, distiller, train_loader, host_engine, teacher,
                                            data_record.get("train_split", {}), rt.precision())
        if has_teacher and dist_info.is_main:
            print(note)
    if dist_info.is_main and cfg.EXT.THREADS == 0 and device.type == "cpu":
        from mdistiller_ext.engine.runtime import busy_machine_warning

        # with the run's other opening lines on stdout, as training starts: stderr stays the one-line error's
        warning = busy_machine_warning(torch.get_num_threads())
        if warning:
            print(warning, flush=True)
    barrier()

    try:
        if host_engine:
            from mdistiller_ext.host.route import train_with_host

            best = train_with_host(cfg, name, distiller, train_loader, val_loader, args.resume, teacher, device)
        else:
            from mdistiller_ext.engine.trainer import Trainer

            trainer = Trainer(name, distiller, train_loader, val_loader, cfg, device, force_resume=args.force_resume,
                              dist_info=dist_info, teacher_info=teacher, holdout_loader=holdout_loader,
                              teacher_store=store, data_record=data_record, runtime=rt)
            best = trainer.train(resume=args.resume)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(log_path)) from None
    if cfg.EXT.EXPORT_TEACHER and not has_teacher and dist_info.is_main:
        from mdistiller_ext.runs.teachers import export_teacher

        export_teacher(log_path, cfg)
    return best


class Interrupted(Exception):
    pass


def _interrupted_message(log_path: str) -> str:
    from mdistiller_ext.runs.checkpoint import LATEST, SNAPSHOT, load_safe

    latest, partial = os.path.join(log_path, LATEST), os.path.join(log_path, SNAPSHOT)
    epoch = int(load_safe(latest).get("epoch", 0)) if os.path.isfile(latest) else 0
    try:
        snap = load_safe(partial) if os.path.isfile(partial) else {}
    except UserError:  # unreadable: --resume passes it over too
        snap = {}
    steps = f"{snap['step']} steps of epoch {epoch + 1}" if snap.get("epoch") == epoch + 1 else None
    if epoch == 0 and steps is None:
        return (f"interrupted before the first epoch finished: {log_path} holds no checkpoint to resume; "
                "start again with --overwrite")
    if epoch == 0:
        saved = f"{steps} are saved in {partial}"
    else:
        saved = f"epoch 1 is saved in {latest}" if epoch == 1 else f"epochs 1-{epoch} are saved in {latest}"
        saved += f", and {steps} in {partial}" if steps else ""
    return f"interrupted: {saved}; continue with --resume {log_path}"


def main(argv: Optional[List[str]] = None) -> int:
    try:
        best = run(argv)
        if best is None:
            return 0
        from mdistiller_ext.engine.distributed import shutdown

        shutdown()  # under torchrun: every process leaves the group together, before the interpreter ends
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


if __name__ == "__main__":  # python -m mdistiller_ext.cli.train (how the comparison tool starts runs)
    sys.exit(main())

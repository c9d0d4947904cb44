"""``python tools/eval.py -c CHECKPOINT [-m MODEL] [-d DATASET]``: top-1/top-5 of a checkpoint on a test split.

Accepts a student file from either engine (``student_best``, ``student_N``, an exported teacher,
mdistiller's own ``student_*``) and a whole distiller checkpoint (``latest``, ``best``,
``epoch_N``), for which every head is evaluated (DHKD's auxiliary head, AEKT's KD head). The
model and dataset come from the run directory's ``config.yaml`` (or the checkpoint's own
config) where there is one, else from ``-m``/``-d``.
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

import torch
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.runs.checkpoint import ClassCountMismatch, load_safe, load_state, state_dict_of
from mdistiller_ext.errors import UserError


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a checkpoint (student or whole distiller) on a test split.")
    p.add_argument("-c", "--ckpt", required=True, help="checkpoint file (student_best, best, latest, ckpt_epoch_240.pth, ...)")
    p.add_argument("-m", "--model", default="", help="student architecture, when no config.yaml sits beside the file")
    p.add_argument("-d", "--dataset", default="", choices=["", "cifar100", "cifar10", "imagenet"],
                   help="dataset (default: the run's config, else cifar100)")
    p.add_argument("--cfg", default="", help="the run's config, when it is neither beside the file nor inside it")
    p.add_argument("--data-root", default="", help="dataset folder (default: the config's EXT.DATA_ROOT)")
    p.add_argument("-bs", "--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="a method module from outside the package (for its runs' checkpoints); repeatable")
    return p.parse_args(argv)


def _run_config(args: argparse.Namespace, state: dict) -> Optional[CfgNode]:
    """The run's config: --cfg, the checkpoint's own, or config.yaml beside the checkpoint."""
    from mdistiller_ext.runs.naming import load_config

    if args.cfg:
        return load_config(args.cfg, [])
    beside = os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "config.yaml")
    from mdistiller_ext.config import merge_text

    text, source = (state.get("config"), f"{args.ckpt} (its config)") if isinstance(state.get("config"), str) else (None, beside)
    if text is None and os.path.isfile(beside):
        with open(beside) as f:
            text = f.read()
    if text is None:
        return None
    cfg = registration.base_cfg()
    merge_text(cfg, text, source)
    return cfg


def _weights(state: dict) -> Tuple[dict, bool]:
    """(state_dict without 'module.' prefixes, whether it is a whole distiller's)."""
    sd = state_dict_of(state)
    return sd, any(k.startswith("student.") for k in sd)


def build(args: argparse.Namespace) -> Tuple[torch.nn.Module, CfgNode, str]:
    from mdistiller_ext.builders import build_distiller, build_model
    from mdistiller_ext.data.sources import NUM_CLASSES

    if os.path.isdir(args.ckpt):  # a run directory: its best student, as the host's eval would be pointed at
        best = os.path.join(args.ckpt, "student_best")
        if not os.path.isfile(best):
            held = sorted(f for f in os.listdir(args.ckpt) if f.startswith(("student_", "latest", "best", "epoch_")))
            raise UserError(f"{args.ckpt} is a folder without student_best; give a checkpoint file"
                            + (f" (it holds {', '.join(held)})" if held else ""))
        args.ckpt = best
    state = load_safe(args.ckpt)
    sd, whole = _weights(state)
    cfg = _run_config(args, state)
    if cfg is None:
        if whole:
            raise UserError(f"{args.ckpt} is a whole distiller checkpoint but no config.yaml is beside it; "
                            "pass the run's config with --cfg")
        if not args.model:
            raise UserError(f"no config.yaml beside {args.ckpt}; name the architecture with -m (e.g. -m resnet8)")
        cfg = registration.base_cfg()
        cfg.DATASET.TYPE = args.dataset or "cifar100"
        cfg.DISTILLER.TYPE, cfg.DISTILLER.STUDENT = "NONE", args.model
    cfg.defrost()
    if args.dataset:
        cfg.DATASET.TYPE = args.dataset
    if args.model and args.model != cfg.DISTILLER.STUDENT and not whole:
        # a teacher file inside a student's run folder, say: evaluate it as the named model
        cfg.DISTILLER.TYPE, cfg.DISTILLER.STUDENT = "NONE", args.model
    if args.data_root:
        cfg.EXT.DATA_ROOT = args.data_root
    cfg.DATASET.TEST.BATCH_SIZE = args.batch_size
    cfg.freeze()
    classes = NUM_CLASSES[cfg.DATASET.TYPE]
    if cfg.DISTILLER.TYPE == "NONE" or not whole:
        # a student file: the plain student, or (AEKT kd_then_cls) the distiller's student with its layer
        if cfg.DISTILLER.TYPE != "NONE":
            student = build_distiller(cfg, classes, 1, load_teacher=False)[0].student
        else:
            student = build_model(cfg.DISTILLER.STUDENT, cfg.DATASET.TYPE, classes)
        target, what = student, f"student {cfg.DISTILLER.STUDENT}"
        model = host.Vanilla(student)
    else:
        distiller, _ = build_distiller(cfg, classes, 1, load_teacher=False)
        target, what = distiller, f"{cfg.DISTILLER.TYPE} distiller (student {cfg.DISTILLER.STUDENT}, every head)"
        model = distiller
    try:
        load_state(target, sd, args.ckpt, what)
    except ClassCountMismatch as e:
        if args.dataset:
            raise
        raise UserError(f"{e}; pass the checkpoint's dataset with -d (cifar10, cifar100, imagenet)") from None
    return model, cfg, what


def run(argv: Optional[List[str]] = None) -> dict:
    from mdistiller_ext.data.datasets import build_datasets
    from mdistiller_ext.engine.evaluate import evaluate
    from mdistiller_ext.engine.runtime import Machine, resolve_device

    args = parse_args(argv)
    if args.plugin:
        registration.add_plugins(args.plugin)
    model, cfg, what = build(args)
    # --device auto is this machine's choice, not the training config's EXT.DEVICE
    device = resolve_device(args.device, Machine.current())
    _, test, _ = build_datasets(cfg)
    loader = DataLoader(test, batch_size=args.batch_size, shuffle=False, num_workers=0)
    model.to(device)
    print(f"checkpoint: {args.ckpt} ({what})")
    print(f"data: {cfg.DATASET.TYPE} test split, {len(test)} images, from {cfg.EXT.DATA_ROOT} | device: {device}")
    if device.type == "cpu":
        from mdistiller_ext.engine.runtime import busy_machine_warning

        warning = busy_machine_warning(torch.get_num_threads())
        if warning:
            print(warning, flush=True)
    from tqdm import tqdm

    bar = tqdm(total=len(loader), desc="eval", disable=None, leave=False)
    out = evaluate(model, loader, lambda b: (b[0].to(device).float(), b[1].to(device)), progress=bar.update)
    bar.close()
    heads = ["main"] + [k[len("test_acc_"):] for k in out if k.startswith("test_acc_") and not k.endswith("_top5")]
    for h in heads:
        top1 = out["test_acc"] if h == "main" else out[f"test_acc_{h}"]
        top5 = out["test_acc_top5"] if h == "main" else out[f"test_acc_{h}_top5"]
        print(f"head {h}: top-1 {top1:.2f} | top-5 {top5:.2f}" + (f" | loss {out['test_loss']:.4f}" if h == "main" else ""))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    try:
        run(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

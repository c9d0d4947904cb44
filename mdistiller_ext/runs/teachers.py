"""Where teacher checkpoints are looked for, and the message when none is there."""
import glob
import json
import os
import re
from typing import Dict, List

from yacs.config import CfgNode

from mdistiller_ext.config import EXPORT_EPOCHS
from mdistiller_ext.errors import UserError
from mdistiller_ext.runs.archive import sha256_of

# one folder per dataset under EXT.CKPT_ROOT; cifar100 uses the layout of mdistiller's released teachers
TEACHER_DIRS = {"cifar100": "cifar_teachers", "cifar10": "cifar10_teachers", "imagenet": "imagenet_teachers"}
RELEASE_HINT = ("get mdistiller's released cifar_teachers.tar (an asset of its GitHub releases) and unpack it "
                "into EXT.CKPT_ROOT")


def teacher_folder(cfg: CfgNode, name: str) -> str:
    return os.path.join(cfg.EXT.CKPT_ROOT, TEACHER_DIRS.get(cfg.DATASET.TYPE, cfg.DATASET.TYPE), f"{name}_vanilla")


def _highest_epoch_file(folder: str) -> List[str]:
    numbered = []
    for f in glob.glob(os.path.join(folder, "ckpt_epoch_*.pth")):
        m = re.search(r"ckpt_epoch_(\d+)\.pth$", f)
        if m:
            numbered.append((int(m.group(1)), f))
    return [max(numbered)[1]] if numbered else []


def resolve_teacher_checkpoint(cfg: CfgNode, name: str, host_path: str = None) -> str:
    """EXT.TEACHER_CKPT if set; else <CKPT_ROOT>/<dataset dir>/<name>_vanilla/ckpt_epoch_240.pth,
    then the host package's own path, then the highest ckpt_epoch_N.pth in that folder."""
    if cfg.EXT.TEACHER_CKPT:
        if not os.path.isfile(cfg.EXT.TEACHER_CKPT):
            raise UserError(f"EXT.TEACHER_CKPT {cfg.EXT.TEACHER_CKPT} does not exist; fix the path or leave it empty to use {cfg.EXT.CKPT_ROOT}")
        return cfg.EXT.TEACHER_CKPT
    folder = teacher_folder(cfg, name)
    candidates = [os.path.join(folder, "ckpt_epoch_240.pth")]
    if host_path and os.path.isabs(host_path):
        candidates.append(host_path)
    candidates += _highest_epoch_file(folder)
    for c in candidates:
        if os.path.isfile(c):
            return c
    vanilla = f"configs/{cfg.DATASET.TYPE}/vanilla/{name}.yaml"
    raise UserError(
        f"no {cfg.DATASET.TYPE} teacher checkpoint for {name}: looked for {candidates[0]}; "
        f"set EXT.TEACHER_CKPT, "
        + (f"{RELEASE_HINT}, " if cfg.DATASET.TYPE == "cifar100" else "")
        + f"or train one with: python tools/train.py --cfg {vanilla}"
    )


def record_path(ckpt: str) -> str:
    """The JSON that an exported teacher carries beside it (which run, which epoch, its accuracy)."""
    return os.path.splitext(ckpt)[0] + ".json"


def describe_teacher(path: str) -> Dict[str, object]:
    """What is known of a teacher file: its sha256, and its recorded test accuracy and source run, from
    the export record beside it or, for a file inside a run directory, from that run's worklog."""
    from mdistiller_ext.runs import worklog

    info: Dict[str, object] = {"path": path, "sha256": sha256_of(path)}
    rec = record_path(path)
    if os.path.isfile(rec):
        with open(rec) as f:
            info.update(json.load(f))
        return info
    log = os.path.join(os.path.dirname(path), "worklog.txt")
    if os.path.isfile(log):
        parsed = worklog.read(log)
        name = os.path.basename(path)
        if name in ("student_best", "best") and parsed.epochs:
            epoch = parsed.best_epoch
        elif name in ("student_latest", "latest") and parsed.epochs:
            epoch = parsed.last_epoch
        else:
            m = re.fullmatch(r"(?:student|epoch)_(\d+)", name)
            epoch = int(m.group(1)) if m else None
        if epoch in parsed.epochs:
            info.update(source_run=os.path.dirname(path), epoch=epoch, test_acc=parsed.epochs[epoch].get("test_acc"))
    return info


def summary_line(info: Dict[str, object]) -> str:
    acc, source = info.get("test_acc"), info.get("test_acc_source", "recorded")
    if acc is None:
        known = "accuracy not known"
    elif source == "recorded":
        known = f"recorded test top-1 {acc:.2f} at epoch {info.get('epoch')} of {info.get('source_run')}"
    else:
        when = "now" if source == "measured" else f"on {str(info.get('measured', '?'))[:10]}, remembered by its sha256"
        known = (f"test top-1 {acc:.2f} on the {info.get('dataset')} test split ({info.get('test_images'):,} images), "
                 f"measured {when}")
    return f"teacher: {info['path']} ({known}; sha256 {str(info['sha256'])[:12]})"


def export_teacher(run_dir: str, cfg: CfgNode) -> str:
    """After a vanilla run with EXT.EXPORT_TEACHER: write the trained network where distillation looks for
    teachers, the best epoch's weights (EXT.EXPORT_TEACHER_EPOCH best, the model the worklog's best_acc
    describes) or the last epoch's, with a record beside it. Returns the written path."""
    from mdistiller_ext.runs import worklog
    from mdistiller_ext.runs.checkpoint import load_safe, save_atomic

    folder = teacher_folder(cfg, cfg.DISTILLER.STUDENT)
    dest = os.path.join(folder, f"ckpt_epoch_{cfg.SOLVER.EPOCHS}.pth")
    log = worklog.read(os.path.join(run_dir, "worklog.txt"))
    which = cfg.EXT.EXPORT_TEACHER_EPOCH
    epoch = log.best_epoch if which == "best" else log.last_epoch
    state = load_safe(os.path.join(run_dir, EXPORT_EPOCHS[which]))
    save_atomic({"model": state["model"]}, dest)
    record = {"source_run": run_dir, "epoch": epoch, "which": which,
              "test_acc": log.epochs[epoch].get("test_acc"), "epochs_trained": log.last_epoch}
    with open(record_path(dest), "w") as f:
        json.dump(record, f, indent=1)
    print(f"teacher exported to {dest}: the weights of epoch {epoch} ({which}; test top-1 {record['test_acc']:.2f}), under "
          f"the name mdistiller looks for after a {cfg.SOLVER.EPOCHS}-epoch run; {record_path(dest)} says which epoch")
    return dest

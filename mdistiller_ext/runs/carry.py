"""A half-done long run's checkpoint, carried in git so that a fresh machine resumes it where it stopped.

A 240-epoch run spans many sessions, and a session may start on a machine without the last one's disk: the
worklog and records alone would start it again from epoch 1. ``latest`` holds the distiller's whole state dict,
the frozen teacher's weights included (for res56 -> res20, 3.6 of its 5.9 MB); those are a copy of the teacher
file the run names in runtime.json, so the carried file (``latest.carry``) leaves them out and keeps the file's
sha256, and restoring puts the file's weights back. Packing checks that they are the file's, bit for bit, and
refuses otherwise, so a restored ``latest`` equals the one packed: same keys in the same order, equal tensors.

    python -m mdistiller_ext.runs.carry pack FROM TO      latest of every unfinished run under FROM -> TO/<run>/latest.carry
    python -m mdistiller_ext.runs.carry restore FROM TO   every FROM/<run>/latest.carry -> TO/<run>/latest, with the run's
                                                          worklog and records, where TO has no later epoch

Relative teacher paths (runtime.json's, as the run saw them) are resolved from the current directory: run both
from a checkout root, beside ../shared, as the CPU queue does.
"""
import argparse
import os
import shutil
import sys
from typing import Dict, List, Optional

import torch

from mdistiller_ext.errors import UserError
from mdistiller_ext.runs import provenance, worklog
from mdistiller_ext.runs.archive import sha256_of
from mdistiller_ext.runs.checkpoint import load_safe, save_atomic, state_dict_of

CARRY = "latest.carry"
TEACHER = "teacher."
# what a run directory needs beside its checkpoint to go on as if it had never moved
RECORDS = ("worklog.txt", "config.yaml", provenance.RUNTIME_FILE, "grad_probe.csv")


def _teacher_file(run_dir: str) -> Optional[Dict[str, str]]:
    """The teacher file a run learned from, as its runtime.json records it (None for a run without one)."""
    teacher = (provenance.read(run_dir) or {}).get("teacher")
    if not isinstance(teacher, dict) or not teacher.get("path") or not teacher.get("sha256"):
        return None
    return {"path": str(teacher["path"]), "sha256": str(teacher["sha256"])}


def _teacher_weights(teacher: Dict[str, str]) -> Dict[str, torch.Tensor]:
    path = teacher["path"]
    if not os.path.isfile(path):
        raise UserError(f"teacher file {path} (from runtime.json) not found; run from the checkout root beside ../shared")
    if sha256_of(path) != teacher["sha256"]:
        raise UserError(f"teacher file {path} is not the one the run learned from (sha256 {teacher['sha256'][:12]}); "
                        "put that file back")
    return state_dict_of(load_safe(path))


def pack(run_dir: str, out: str) -> int:
    """``run_dir/latest`` without the teacher's weights, into ``out``; returns its epoch."""
    state = load_safe(os.path.join(run_dir, "latest"))
    model = state["model"]
    teacher_keys = [k for k in model if k.startswith(TEACHER)]
    carried = dict(state, carry={"keys": list(model), "teacher": None})
    if teacher_keys:
        teacher = _teacher_file(run_dir)
        if teacher is None:
            raise UserError(f"{run_dir}: the checkpoint holds a teacher but runtime.json names no teacher file")
        weights = _teacher_weights(teacher)
        differ = [k for k in teacher_keys if k[len(TEACHER):] not in weights
                  or not torch.equal(weights[k[len(TEACHER):]], model[k])]
        if differ or len(weights) != len(teacher_keys):
            raise UserError(f"{run_dir}: the checkpoint's teacher weights are not {teacher['path']}'s "
                            f"({differ[0] if differ else 'another number of tensors'}); not carried")
        carried["model"] = {k: v for k, v in model.items() if not k.startswith(TEACHER)}
        carried["carry"]["teacher"] = teacher
    save_atomic(carried, out)
    return int(state["epoch"])


def restore(carried_path: str, out: str) -> int:
    """The ``latest`` that ``carried_path`` was packed from, into ``out``; returns its epoch."""
    carried = load_safe(carried_path)
    meta = carried.pop("carry", None)
    if not isinstance(meta, dict):
        raise UserError(f"{carried_path} is not a carried checkpoint (no 'carry' entry); pack it with "
                        "python -m mdistiller_ext.runs.carry pack")
    model = dict(carried["model"])
    if meta["teacher"] is not None:
        weights = _teacher_weights(meta["teacher"])
        model.update({TEACHER + k: v for k, v in weights.items()})
    if set(model) != set(meta["keys"]):
        raise UserError(f"{carried_path}: the restored state has other keys than the packed one; not restored")
    carried["model"] = {k: model[k] for k in meta["keys"]}
    save_atomic(carried, out)
    return int(carried["epoch"])


def _epoch(path: str) -> int:
    """The epoch a checkpoint holds; 0 where there is none (a run resumes only from a later one)."""
    return int(load_safe(path)["epoch"]) if os.path.isfile(path) else 0


def _run_dirs(root: str) -> List[str]:
    found = [d for d, _, files in os.walk(root) if "worklog.txt" in files or CARRY in files]
    return sorted(os.path.relpath(d, root) for d in found)


def pack_all(src: str, dst: str) -> List[str]:
    """Carry every unfinished run's latest under ``src`` into ``dst`` (unless the same epoch is there); drop the
    carried file of every run that has finished (its results are its worklog). Returns what it did, a line each."""
    done = []
    for rel in _run_dirs(src):
        run, carried = os.path.join(src, rel), os.path.join(dst, rel, CARRY)
        log = os.path.join(run, "worklog.txt")
        if os.path.isfile(log) and worklog.read(log).finished:
            if os.path.isfile(carried):
                os.remove(carried)
                done.append(f"  {rel}: finished, its carried checkpoint removed")
            continue
        latest = os.path.join(run, "latest")
        if not os.path.isfile(latest) or _epoch(latest) == _epoch(carried):
            continue
        os.makedirs(os.path.dirname(carried), exist_ok=True)
        done.append(f"  {rel}: checkpoint of epoch {pack(run, carried)} carried")
    return done


def restore_all(src: str, dst: str) -> List[str]:
    """Restore every run carried under ``src`` into ``dst`` where ``dst`` holds no later epoch, with its records."""
    done = []
    for rel in _run_dirs(src):
        carried, run = os.path.join(src, rel, CARRY), os.path.join(dst, rel)
        if not os.path.isfile(carried):
            continue
        latest = os.path.join(run, "latest")
        if _epoch(latest) >= _epoch(carried):
            continue
        os.makedirs(run, exist_ok=True)
        epoch = restore(carried, latest)
        for name in RECORDS:  # the worklog may run ahead of the checkpoint by an epoch: resume drops that
            if os.path.isfile(os.path.join(src, rel, name)):
                shutil.copyfile(os.path.join(src, rel, name), os.path.join(run, name))
        done.append(f"  {rel}: restored at epoch {epoch}")
    return done


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdistiller_ext.runs.carry", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("pack", "restore"))
    parser.add_argument("src", help="pack: the runs' folder; restore: the folder holding the carried files")
    parser.add_argument("dst", help="pack: where the carried files go; restore: the runs' folder")
    args = parser.parse_args(argv)
    try:
        lines = (pack_all if args.action == "pack" else restore_all)(args.src, args.dst)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines) if lines else "  nothing to carry" if args.action == "pack" else "  nothing to restore")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How a run was computed: route, device, precision, data path, zoo, versions, commit, world size.

Written into the run directory (``runtime.json``) and as ``# runtime:`` lines in the worklog,
once when a run starts and again, under ``resumed``, whenever it is resumed, so that every
number in a worklog can be traced to the code path that produced it. The comparison tool reads
it back to refuse pooling runs that were computed differently.
"""
import json
import os
import importlib
import platform
import subprocess
from importlib import metadata
from typing import Dict, Optional

import torch

from mdistiller_ext.atomic import write_text

RUNTIME_FILE = "runtime.json"
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# the folder holding the package (a checkout's root, or site-packages): git and child processes look there
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(importlib.import_module("mdistiller_ext").__file__)))


def git_commit() -> str:
    """The project's commit (``+dirty`` with uncommitted changes), or ``unknown`` outside a git checkout."""
    here = PACKAGE_PARENT
    try:
        sha = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "mdistiller_ext"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()})"


def precision_name(amp: Optional[torch.dtype]) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def describe(route: str, device: torch.device, amp: Optional[torch.dtype], channels_last: bool, data_path: str,
             zoo: str, world_size: int = 1, compiled: bool = False,
             teacher: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """The resolved runtime of one run (what ``auto`` settings became on this machine), and the teacher
    file it learned from (its sha256 and recorded accuracy)."""
    return {
        "route": route,
        "device": device_name(device),
        "amp": precision_name(amp),
        "channels_last": bool(channels_last),
        "data_path": data_path,
        "zoo": zoo,
        "compile": bool(compiled),
        "world_size": int(world_size),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "mdistiller": _version("mdistiller"),
        "mdistiller_ext_commit": git_commit(),
        "python": platform.python_version(),
        "teacher_sha256": (teacher or {}).get("sha256", "none"),
        "teacher": teacher or "none (no teacher)",
    }


def _resumed(resumed_from: int, at_step: Optional[int]) -> str:
    where = f"resumed after epoch {resumed_from}"
    return where if at_step is None else f"{where} and {at_step} steps of epoch {resumed_from + 1}, from its snapshot"


def worklog_line(info: Dict[str, object], resumed_from: Optional[int] = None, at_step: Optional[int] = None) -> str:
    head = "# runtime" if resumed_from is None else f"# runtime ({_resumed(resumed_from, at_step)})"
    flat = {k: v for k, v in info.items() if k != "teacher"}
    teacher = info.get("teacher")
    if isinstance(teacher, dict):
        flat["teacher"] = f"{teacher.get('path')} (test top-1 {teacher.get('test_acc', 'not recorded')})"
    return head + ": " + " | ".join(f"{k}={v}" for k, v in flat.items()) + os.linesep


def record(run_dir: str, info: Dict[str, object], resumed_from: Optional[int] = None,
           at_step: Optional[int] = None) -> None:
    """Write runtime.json (a fresh run) or add a ``resumed`` entry to it (a resumed run; ``at_step``: the
    steps of the next epoch its in-epoch snapshot held)."""
    data = read(run_dir) if resumed_from is not None else None
    if data is None:
        data = dict(info)
    else:
        entry = dict(info, after_epoch=resumed_from)
        if at_step is not None:
            entry["after_step"] = at_step
        data.setdefault("resumed", []).append(entry)
    _write(run_dir, data)


def record_cost(run_dir: str, first_epoch: int, last_epoch: int, wall_s: float, cpu_s: float, started: str) -> None:
    """One training segment's wall-clock and process CPU time (all threads) so far, in runtime.json.

    The engine calls it after every epoch (a killed run keeps the cost of what it finished); the
    segment that began at ``started`` is updated in place, a new one is appended."""
    data = read(run_dir) or {}
    segments = data.setdefault("cost", [])
    entry = {"epochs": [first_epoch, last_epoch], "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1), "started": started}
    if segments and segments[-1].get("started") == started:
        segments[-1] = entry
    else:
        segments.append(entry)
    _write(run_dir, data)


def cost_of(data: Optional[Dict[str, object]]) -> Optional[Dict[str, object]]:
    """A run's recorded cost, all segments together: {"cpu_s", "wall_s", "epochs" (the set of epochs
    the segments cover)}; None where nothing was recorded. A run whose segments miss some of its epochs
    (stopped before cost was recorded per epoch) has fewer epochs here than in its worklog."""
    segments = (data or {}).get("cost") or []
    if not segments:
        return None
    epochs = {e for seg in segments for e in range(seg["epochs"][0], seg["epochs"][1] + 1)}
    return {"cpu_s": sum(seg["cpu_s"] for seg in segments), "wall_s": sum(seg["wall_s"] for seg in segments),
            "epochs": epochs}


def _write(run_dir: str, data: Dict[str, object]) -> None:
    """runtime.json, replaced atomically."""
    write_text(os.path.join(run_dir, RUNTIME_FILE), json.dumps(data, indent=1))


def read(run_dir: str) -> Optional[Dict[str, object]]:
    path = os.path.join(run_dir, RUNTIME_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)



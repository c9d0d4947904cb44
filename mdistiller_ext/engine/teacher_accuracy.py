"""A teacher's test accuracy, known before a student learns from it, and the refusal of a useless one.

The accuracy is the one recorded with the file (an export record or the worklog of the run that
wrote it) where there is one; otherwise it is measured once on the test split and remembered under
``EXT.DATA_CACHE/teacher_accuracy/`` by the file's sha256, the dataset and its test split's
fingerprint, so that the next run of any method with that teacher reads it instead of measuring.
A teacher that does not clearly beat chance (random weights, another dataset's file with the same
class count, a checkpoint of the wrong run) is refused in one line before training starts.
"""
import json
import math
import os
import time
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn
from yacs.config import CfgNode

from mdistiller_ext.errors import UserError

FOLDER = "teacher_accuracy"
AUTO = -1.0  # EXT.TEACHER_MIN_ACC's default: refuse what does not clearly beat chance
# "clearly": at least twice chance, and a one-sided binomial test against chance below this p-value
CHANCE_P = 1e-3


def memory_path(cfg: CfgNode, sha256: str, test_key: str) -> str:
    return os.path.join(cfg.EXT.DATA_CACHE, FOLDER, f"{sha256[:32]}-{cfg.DATASET.TYPE}-{test_key[:12]}.json")


def test_split_key(test_record: Dict[str, object], cfg: CfgNode) -> str:
    """What identifies the test split measured on: its pixels' fingerprint where known, else its folder."""
    if test_record.get("sha256"):
        return str(test_record["sha256"])
    import hashlib

    return hashlib.sha256(os.path.abspath(cfg.EXT.DATA_ROOT).encode()).hexdigest()


def least_accuracy(num_classes: int, images: int) -> float:
    """The top-1 (%) a teacher must reach to clearly beat chance on ``images`` test images: twice chance,
    and no fewer hits than a chance classifier reaches with probability CHANCE_P (normal approximation
    of the binomial tail, which errs high for small splits)."""
    p = 1.0 / num_classes
    z = 3.09  # one-sided standard normal quantile of 1 - CHANCE_P
    hits = images * p + z * math.sqrt(images * p * (1 - p))
    return max(200.0 / num_classes, 100.0 * hits / max(images, 1))


@torch.no_grad()
def measure(teacher: nn.Module, batches: Iterable, prepare: Callable,
            reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Tuple[float, float, int]:
    """(top-1 %, top-5 %, images) of ``teacher`` on the batches, in fp32; ``reduce`` sums over processes."""
    from mdistiller_ext.engine.evaluate import topk_correct

    was_training = teacher.training
    teacher.eval()
    sums = None
    for batch in batches:
        image, target = prepare(batch)
        logits = teacher(image)[0]
        counts = torch.cat([topk_correct(logits.float(), target), torch.tensor([float(target.shape[0])], device=logits.device)])
        sums = counts if sums is None else sums + counts
    teacher.train(was_training)
    if sums is None:
        raise UserError("the test split is empty: nothing to measure the teacher on")
    if reduce is not None:
        sums = reduce(sums)
    top1, top5, n = sums.tolist()
    return 100.0 * top1 / n, 100.0 * top5 / n, int(n)


def known_accuracy(cfg: CfgNode, info: Dict[str, object], teacher: nn.Module, test_loader, prepare: Callable,
                   test_record: Dict[str, object], is_main: bool = True,
                   reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Dict[str, object]:
    """``info`` (describe_teacher's) with the teacher's test top-1 in ``test_acc`` and where it came from in
    ``test_acc_source``: recorded with the file, remembered from an earlier run, or measured now."""
    info = dict(info)
    if info.get("test_acc") is not None:
        info["test_acc_source"] = "recorded"
        return info
    sha = str(info.get("sha256", ""))
    path = memory_path(cfg, sha, test_split_key(test_record, cfg)) if len(sha) == 64 else None
    found_here = bool(path) and os.path.isfile(path)
    if reduce is not None:  # every process takes the same branch: measuring is collective
        flags = reduce(torch.tensor([float(found_here), 1.0]))
        found_here = bool(flags[0] == flags[1])
    if found_here:
        with open(path) as f:
            info.update(json.load(f))
        info["test_acc_source"] = "remembered"
        return info
    top1, top5, n = measure(teacher, test_loader, prepare, reduce)
    found = {"test_acc": top1, "test_acc_top5": top5, "test_images": n, "dataset": cfg.DATASET.TYPE,
             "measured": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "measured_file": info.get("path")}
    if path and is_main:
        from mdistiller_ext.atomic import write_text

        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_text(path, json.dumps(found, indent=1) + "\n")
    info.update(found)
    info["test_acc_source"] = "measured"
    return info


def refuse_useless(cfg: CfgNode, info: Dict[str, object], num_classes: int) -> None:
    """A one-line error where the teacher's test top-1 is below EXT.TEACHER_MIN_ACC (auto: clearly above chance)."""
    acc = info.get("test_acc")
    if acc is None:
        return
    wanted = cfg.EXT.TEACHER_MIN_ACC
    if wanted == 0:
        return
    images = int(info.get("test_images") or 0)
    floor = least_accuracy(num_classes, images) if wanted == AUTO or wanted < 0 else wanted
    if float(acc) < floor:
        what = ("does not clearly beat chance" if wanted < 0 else f"is below EXT.TEACHER_MIN_ACC {wanted:g}")
        raise UserError(f"teacher {info.get('path')} has test top-1 {float(acc):.2f}% on {cfg.DATASET.TYPE} "
                        f"({100.0 / num_classes:.1f}% is chance): it {what}; is it this dataset's trained "
                        f"{cfg.DISTILLER.TEACHER}? (EXT.TEACHER_MIN_ACC 0 accepts it anyway)")

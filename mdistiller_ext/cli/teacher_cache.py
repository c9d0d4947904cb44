"""``python tools/teacher_cache.py --cfg CONFIG.yaml [--build] [KEY VALUE ...]``: the teacher-logit
cache a run of that config uses: where it is, how full, what filling it cost; ``--build`` fills
every view up front (progress bar; resumable, and safe to stop at any point)."""
import argparse
import sys
from typing import List, Optional

from mdistiller_ext.errors import UserError


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Show or fill the teacher-logit cache of a config's runs.")
    p.add_argument("--cfg", required=True, help="a distillation config (its teacher, dataset and precision)")
    p.add_argument("--build", action="store_true", help="fill every missing view of every training image now")
    p.add_argument("--batch", type=int, default=512, help="images per teacher forward pass while building")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, as for tools/train.py")
    return p.parse_args(argv)


def run(argv: Optional[List[str]] = None) -> str:
    args = parse_args(argv)
    from tqdm import tqdm

    from mdistiller_ext.data import teacher_cache
    from mdistiller_ext.builders import build_distiller, teacher_path
    from mdistiller_ext.data.loaders import get_loaders
    from mdistiller_ext.runs.naming import load_config
    from mdistiller_ext.engine.runtime import resolve
    from mdistiller_ext.runs.teachers import describe_teacher

    cfg = load_config(args.cfg, args.opts)
    cfg.defrost()
    cfg.EXT.VAL_SPLIT, cfg.EXT.TRAIN_SUBSET = 0, 0  # the cache covers the full training split
    if cfg.EXT.TEACHER_CACHE == "off":
        cfg.EXT.TEACHER_CACHE = "auto"
    rt = resolve(cfg)
    device = rt.device
    loaders = get_loaders(cfg, None, device)
    distiller, _ = build_distiller(cfg, loaders.num_classes, loaders.num_data)
    teacher = describe_teacher(teacher_path(cfg))
    amp = rt.amp
    store, note = teacher_cache.for_run(cfg, distiller, loaders.train, rt.host, teacher,
                                        loaders.record["train_split"], rt.precision())
    if store is None:
        raise UserError(note)
    if args.build:
        total = len(loaders.train.labels) * teacher_cache.VIEWS
        cached = teacher_cache.CachedTeacher(distiller.teacher.to(device).eval(), store, amp)
        with tqdm(total=total, desc="teacher logits", unit="view", dynamic_ncols=True) as bar:
            teacher_cache.build(cached, loaders.train, args.batch, bar.update)
        cached.finish()
    record = store.read_record(store.path)
    fill = record.get("fill", {})
    return (f"{store.path}: {100 * store.filled():.1f}% of the training views filled; {fill.get('entries', 0):,} entries written by {fill.get('runs', 0)} runs or builds in "
            f"{fill.get('teacher_cpu_s', 0.0) / 60:.1f} CPU-minutes of teacher time (teacher {teacher['path']}, "
            f"precision {record['key']['precision']})")


def main(argv: Optional[List[str]] = None) -> int:
    try:
        print(run(argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the entries written so far are kept (each counts once fully written); run again to go on",
              file=sys.stderr)
        return 130
    return 0

"""``tools/train.py --cfg X --check``: everything a run decides before its first step, on a fake batch."""
import argparse
import os
import sys

from mdistiller_ext import registry
from mdistiller_ext.errors import UserError
from mdistiller_ext.cli.train_args import unread_keys, unread_warning
from mdistiller_ext.runs.naming import load_config

def check(args: argparse.Namespace) -> None:
    """--check: everything a run decides before its first step, on a fake batch; writes nothing."""
    import torch

    from mdistiller_ext.builders import build_distiller, build_model, teacher_path
    from mdistiller_ext.data.sources import NUM_CLASSES
    from mdistiller_ext.engine.runtime import resolve
    from mdistiller_ext.validate import validate, validate_values

    cfg = load_config(args.cfg or os.path.join(args.run_dir, "config.yaml"), args.opts)
    for key in unread_keys(cfg, args.opts, args.cfg):  # as training says them
        print(unread_warning(cfg, key), file=sys.stderr)
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
    if random_teacher:
        tame(distiller.teacher, torch.randn(16, 3, size, size, generator=g))
    distiller.train()
    logits, losses = distiller(image=image, target=target, epoch=1, index=torch.arange(2),
                               contrastive_index=torch.zeros(2, 1, dtype=torch.long))
    total = sum(v.mean() for v in losses.values())
    total.backward()
    if not torch.isfinite(total):
        raise UserError(f"check: the fake batch's loss is {float(total)} ({', '.join(losses)})")
    print(f"check passed: {cfg.DISTILLER.TYPE} {cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT} on {cfg.DATASET.TYPE}, "
          f"losses {', '.join(f'{k} {float(v.detach().mean()):.4f}' for k, v in losses.items())}"
          + (" (from a random stand-in teacher: finite, of a plausible size, and nothing more)" if random_teacher else "")
          + f"; {rt.line()}")


def tame(teacher, images) -> None:
    """Give a random teacher's BatchNorm layers the statistics of a batch: with the initial ones (mean 0,
    variance 1) a deep random network's logits grow layer by layer, and the check printed distillation
    losses in the hundreds of thousands; calibrated, they are of a trained network's size."""
    import torch

    norms = [m for m in teacher.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches seen: here, this one
    teacher.train()
    with torch.no_grad():
        teacher(images)
    teacher.eval()

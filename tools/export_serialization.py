"""Export AEKT's learned serialization matrix and compare it with the teacher's class similarity.

python tools/export_serialization.py output/cifar100_aekt/<run> [--ckpt latest|best] [--out DIR]

Writes into the run directory (or --out): serialization_matrix.npy, teacher_similarity.npy,
serialization_heatmap.png and serialization_summary.json (Pearson correlations).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mdistiller_ext import host  # noqa: E402
from mdistiller_ext.analysis import class_similarity, correlation, plot_heatmaps, serialization_matrix  # noqa: E402
from mdistiller_ext.checkpoint import load_safe  # noqa: E402
from mdistiller_ext.errors import UserError  # noqa: E402


def export(run_dir: str, ckpt: str, out: str, cfg_path: str, temperature: float) -> dict:
    from mdistiller_ext.builders import build_teacher
    from mdistiller_ext.data import get_dataset

    cfg_file = cfg_path or os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_file):
        raise UserError(f"no config at {cfg_file}; pass --cfg with the run's yaml (mdistiller's trainer does not save it)")
    cfg = host.base_cfg()
    cfg.merge_from_file(cfg_file)
    cfg.DATASET.NUM_WORKERS = 0
    state = load_safe(os.path.join(run_dir, ckpt))
    try:
        serial = serialization_matrix(state.get("model", state))
    except KeyError as e:
        raise UserError(f"{os.path.join(run_dir, ckpt)}: {e.args[0]}") from None
    _, val_loader, _, num_classes = get_dataset(cfg)
    teacher = build_teacher(cfg, num_classes)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    similarity = class_similarity(teacher, val_loader, num_classes, device, temperature)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "serialization_matrix.npy"), serial)
    np.save(os.path.join(out, "teacher_similarity.npy"), similarity)
    summary = {
        "checkpoint": os.path.join(run_dir, ckpt), "num_classes": num_classes, "teacher": cfg.DISTILLER.TEACHER,
        "serial_order": cfg.AEKT.SERIAL, "temperature": temperature,
        "pearson_offdiag_W_vs_teacher": correlation(serial, similarity, off_diagonal=True),
        "pearson_full_W_vs_teacher": correlation(serial, similarity, off_diagonal=False),
        "max_abs_W_minus_I": float(np.abs(serial - np.eye(num_classes)).max()),
    }
    plot_heatmaps(serial, similarity, os.path.join(out, "serialization_heatmap.png"),
                  f"{cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT}: off-diagonal r = {summary['pearson_offdiag_W_vs_teacher']:.3f}")
    with open(os.path.join(out, "serialization_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("run_dir")
    ap.add_argument("--ckpt", default="latest", help="checkpoint file in the run directory (latest, best, epoch_N)")
    ap.add_argument("--out", default=None, help="output folder (default: the run directory)")
    ap.add_argument("--cfg", default=None, help="the run's config (default: <run_dir>/config.yaml)")
    ap.add_argument("--temperature", type=float, default=1.0, help="teacher softmax temperature")
    args = ap.parse_args()
    try:
        summary = export(args.run_dir, args.ckpt, args.out or args.run_dir, args.cfg, args.temperature)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

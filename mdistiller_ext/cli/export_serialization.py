"""Export AEKT's learned serialization matrix and compare it with the teacher's class similarity.

python tools/export_serialization.py output/cifar100_aekt/<run> [--ckpt latest|best] [--out DIR]

Writes into the run directory (or --out): serialization_matrix.npy, teacher_similarity.npy,
serialization_heatmap.png and serialization_summary.json (Pearson correlations of W with the
transposed teacher similarity, measured by default on the training split at the run's AEKT.T).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

from mdistiller_ext.reporting.serialization import (class_similarity, correlation, oriented_similarity, plot_heatmaps,
                                     serialization_matrix)
from mdistiller_ext.runs.checkpoint import load_safe
from mdistiller_ext.errors import UserError


def export(run_dir: str, ckpt: str, out: str, cfg_path: str, temperature: float, split: str) -> dict:
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from mdistiller_ext.builders import build_teacher
    from mdistiller_ext.data.sources import NUM_CLASSES
    from mdistiller_ext.data.datasets import class_names, eval_split
    from mdistiller_ext.runs.naming import load_config

    cfg_file = cfg_path or os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_file):
        raise UserError(f"no config at {cfg_file}; pass --cfg with the run's yaml (mdistiller's trainer does not save it)")
    cfg = load_config(cfg_file, ["DATASET.NUM_WORKERS", "0"])
    state = load_safe(os.path.join(run_dir, ckpt))
    try:
        serial = serialization_matrix(state.get("model", state))
    except KeyError as e:
        raise UserError(f"{os.path.join(run_dir, ckpt)}: {e.args[0]}") from None
    temperature = temperature if temperature > 0 else cfg.AEKT.T  # S was trained at the run's temperature
    num_classes = NUM_CLASSES[cfg.DATASET.TYPE]
    data = eval_split(cfg, split)
    loader = DataLoader(data, batch_size=cfg.DATASET.TEST.BATCH_SIZE, shuffle=False, num_workers=0)
    teacher = build_teacher(cfg, num_classes)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"teacher {cfg.DISTILLER.TEACHER} on the {split} split ({len(data)} images) at T = {temperature:g}, {device}",
          file=sys.stderr)
    bar = tqdm(total=len(loader), desc="teacher similarity", disable=None)
    similarity = class_similarity(teacher, loader, num_classes, device, temperature, progress=bar.update)
    bar.close()
    sim_w = oriented_similarity(similarity)
    os.makedirs(out, exist_ok=True)
    files = {name: os.path.join(out, name) for name in ("serialization_matrix.npy", "teacher_similarity.npy",
                                                         "serialization_heatmap.png", "serialization_summary.json")}
    np.save(files["serialization_matrix.npy"], serial)
    np.save(files["teacher_similarity.npy"], similarity)
    summary = {
        "checkpoint": os.path.join(run_dir, ckpt), "num_classes": num_classes, "teacher": cfg.DISTILLER.TEACHER,
        "serial_order": cfg.AEKT.SERIAL, "similarity_split": split, "temperature": temperature,
        "orientation": "W[i, j] (input class j -> output class i) against sim[j, i] (teacher_similarity.npy transposed)",
        "pearson_offdiag_W_vs_teacher": correlation(serial, sim_w, off_diagonal=True),
        "pearson_full_W_vs_teacher": correlation(serial, sim_w, off_diagonal=False),
        "max_abs_W_minus_I": float(np.abs(serial - np.eye(num_classes)).max()),
    }
    plot_heatmaps(serial, sim_w, files["serialization_heatmap.png"],
                  f"{cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT}: off-diagonal r = {summary['pearson_offdiag_W_vs_teacher']:.3f}",
                  class_names(cfg))
    with open(files["serialization_summary.json"], "w") as f:
        json.dump(summary, f, indent=2)
    summary["files"] = list(files.values())
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("run_dir")
    ap.add_argument("--ckpt", default="latest", help="checkpoint file in the run directory (latest, best, epoch_N)")
    ap.add_argument("--out", default=None, help="output folder (default: the run directory)")
    ap.add_argument("--cfg", default=None, help="the run's config (default: <run_dir>/config.yaml)")
    ap.add_argument("--split", default="train", choices=["train", "test"],
                    help="images the teacher's class similarity is measured on (default: train, where S was trained)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="teacher softmax temperature (default 0: the run's AEKT.T, the one S was trained at)")
    args = ap.parse_args()
    try:
        summary = export(args.run_dir, args.ckpt, args.out or args.run_dir, args.cfg, args.temperature, args.split)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = summary.pop("files")
    print(json.dumps(summary, indent=2))
    print(f"wrote {len(files)} files: " + ", ".join(files))
    return 0


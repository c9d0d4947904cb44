"""Accuracy parity of the fast data path against the host-style one, on real data, over seeds.

Trains the same KD pair on the CIFAR-10 JPEG copy once per seed with EXT.FAST_DATA on and once
with it off (through tools/compare.py, so finished runs are reused and interrupted ones resumed),
then prints per-seed best/last top-1, mean ± sd per path, the difference of the means with its
standard error and Welch's t, and writes a per-epoch plot of both paths (mean ± sd).

"Within seed noise" here means |t| < 2: the paths' means differ by less than about two standard
errors of that difference.

python benchmarks/parity.py [--seeds 0 1 2 3 4] [--epochs 6] [--decay 4] [--subset 10000] [--set KEY VALUE ...]
                            [--out docs/parity]
"""
import argparse
import math
import os
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

from common import header

import torch

from mdistiller_ext.reporting.aggregate import RunResult, read_run
from mdistiller_ext.reporting.stats import mean_std, welch
from mdistiller_ext.cli.sweep import plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ("on", "off")
LABEL = {"on": "fast (device-resident)", "off": "host-style (PIL, DataLoader)"}


def overrides(args: argparse.Namespace, fast: str) -> List[str]:
    return ["SOLVER.EPOCHS", str(args.epochs), "SOLVER.LR_DECAY_STAGES", f"[{args.decay}]",
            "EXT.TRAIN_SUBSET", str(args.subset), "EXT.FAST_DATA", fast, *args.set]


def run_path(args: argparse.Namespace, fast: str) -> List[RunResult]:
    cmd = [sys.executable, os.path.join("tools", "compare.py"), "--dataset", "cifar10", "--methods", args.method,
           "--pairs", args.pair, "--seeds", *map(str, args.seeds), "--set", *overrides(args, fast),
           "--out", os.path.join(args.out, f"fastdata_{fast}")]
    if subprocess.call(cmd) != 0:
        raise SystemExit(f"error: the runs with EXT.FAST_DATA {fast} failed; see {args.out}/fastdata_{fast}")
    specs = plan("cifar10", [args.method], [args.pair], args.seeds, overrides(args, fast),
                 "configs")
    return [read_run(s.run_dir) for s in specs]


def welch_t(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float]:
    """(difference of means a - b, its standard error, Welch's t); both sides need two or more seeds."""
    diff, se, _ = welch(a, b)
    return diff, se, (diff / se if se else (0.0 if diff == 0 else math.copysign(math.inf, diff)))


def per_epoch(runs: Sequence[RunResult]) -> Dict[int, Tuple[float, float]]:
    epochs = sorted(set.intersection(*(set(r.epochs) for r in runs)))
    return {e: mean_std([r.epochs[e]["test_acc"] for r in runs]) for e in epochs}


def report(results: Dict[str, List[RunResult]]) -> str:
    lines = ["| seed | fast best | fast last | host-style best | host-style last |", "|---|---|---|---|---|"]
    for on, off in zip(results["on"], results["off"]):
        lines.append(f"| {on.seed} | {on.best_top1:.2f} | {on.last_top1:.2f} | {off.best_top1:.2f} | {off.last_top1:.2f} |")
    lines += ["", "| data path | seeds | best top-1 | last top-1 |", "|---|---|---|---|"]
    for fast in PATHS:
        rs = results[fast]
        b, l = mean_std([r.best_top1 for r in rs]), mean_std([r.last_top1 for r in rs])
        lines.append(f"| {LABEL[fast]} | {len(rs)} | {b[0]:.2f} ± {b[1]:.2f} | {l[0]:.2f} ± {l[1]:.2f} |")
    lines.append("")
    for what in ("best_top1", "last_top1"):
        diff, se, t = welch_t([getattr(r, what) for r in results["on"]], [getattr(r, what) for r in results["off"]])
        verdict = "within seed noise" if abs(t) < 2 else "NOT within seed noise"
        lines.append(f"{what.replace('_top1', '')} top-1, fast - host-style: {diff:+.2f} ± {se:.2f} (Welch t = {t:+.2f}): {verdict}")
    return "\n".join(lines)


def plot(results: Dict[str, List[RunResult]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for fast, color in zip(PATHS, ("tab:blue", "tab:orange")):
        curve = per_epoch(results[fast])
        e = list(curve)
        m = [curve[k][0] for k in e]
        s = [curve[k][1] for k in e]
        ax.plot(e, m, marker="o", color=color, label=f"{LABEL[fast]} (n={len(results[fast])})")
        ax.fill_between(e, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=color, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%), mean ± sd over seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--decay", type=int, default=4, help="the learning rate drops 10x after this epoch")
    p.add_argument("--subset", type=int, default=10000, help="fixed training subset (EXT.TRAIN_SUBSET)")
    p.add_argument("--method", default="kd")
    p.add_argument("--pair", default="res20_res8")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY VALUE", help="further overrides for every run")
    p.add_argument("--out", default="docs/parity")
    args = p.parse_args()
    if len(args.set) % 2:
        raise SystemExit(f"error: --set takes KEY VALUE pairs, got {len(args.set)} words")
    if len(set(args.seeds)) < 2:
        raise SystemExit(f"error: --seeds needs two or more seeds (Welch's test needs each path's spread), "
                         f"got {' '.join(map(str, args.seeds))}")
    if args.decay >= args.epochs:
        raise SystemExit(f"error: --decay {args.decay} must be below --epochs {args.epochs}")
    os.chdir(ROOT)  # run directories and --out are relative to the repository, as for tools/compare.py
    os.makedirs(args.out, exist_ok=True)
    results = {fast: run_path(args, fast) for fast in PATHS}
    for fast, rs in results.items():
        unfinished = [r.path for r in rs if r.status != "finished"]
        if unfinished:
            raise SystemExit(f"error: unfinished runs with EXT.FAST_DATA {fast}: {unfinished}; rerun to resume them")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = (header(device, f"{args.method} {args.pair}, CIFAR-10 JPEG, {args.epochs} epochs, "
                           f"LR x0.1 after epoch {args.decay}, {args.subset}-image subset") + "\n\n" + report(results))
    plot(results, os.path.join(args.out, "parity.png"))
    with open(os.path.join(args.out, "parity.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote {args.out}/parity.md and {args.out}/parity.png")


if __name__ == "__main__":
    main()

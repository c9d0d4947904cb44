"""The CIFAR-10 study's five claims, assessed from its run directories: writes claims.md beside this file.

python docs/cifar10_study/claims.py        (after: python tools/compare.py --sweep docs/cifar10_study/sweep.yaml)

For each claim: the best-epoch test top-1 of each side (mean ± sample std over seeds), the difference
of the means with its standard error and degrees of freedom, and a verdict from a two-sided t-test at
the 5% level: "supported" when the difference exceeds t(0.975, df) standard errors (the exact
quantile for the fractional Welch-Satterthwaite df, mdistiller_ext.reporting.stats) in the claimed
direction, "contradicted" when it does so the other way, else "cannot be resolved at this size".
Two sides with several runs each: Welch's test (SE = sqrt(s_a^2/n_a + s_b^2/n_b), Welch-Satterthwaite
df). One side with a single run: its spread is taken to be the other side's (SE = s * sqrt(1/n_a +
1/n_b), df = n - 1 of the side that has a spread). With three seeds a side the critical value is
about 2.8 standard errors, not 2: small samples are held to the t distribution's wider bar.
Nothing here is tuned.
"""
import os
import sys
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from mdistiller_ext.reporting import aggregate  # noqa: E402
from mdistiller_ext.runs import provenance
from mdistiller_ext.reporting.stats import mean_std, t_critical, two_sided_p, welch  # noqa: E402

RUNS = os.path.join(HERE, "runs")
# the first round's DKD and AEKT runs, which had no warm-up: evidence of what that did, never pooled with RUNS
NO_WARMUP = os.path.join(HERE, "runs_no_warmup")
# study config TAG -> what the claims call it
ARMS = {"vanilla,resnet8": "CE-only student", "kd,resnet20,resnet8": "KD", "dkd,resnet20,resnet8": "DKD",
        "dhkd,resnet20,resnet8": "DHKD", "aekt,resnet20,resnet8": "AEKT",
        "dhkd_one_head_bkl,resnet20,resnet8": "single-head CE + BinaryKL",
        "dhkd_align,resnet20,resnet8": "DHKD + alignment",
        # diagnostics of the first AEKT result, one factor of the reconstruction each (no claim rests on them)
        "aekt_ratio_none,resnet20,resnet8": "AEKT without the ratio (w = 1)",
        "aekt_serial_none,resnet20,resnet8": "AEKT without the serialization layer"}
NO_WARMUP_LABEL = " (no warm-up)"


def finished_runs() -> Dict[str, List[aggregate.RunResult]]:
    out: Dict[str, List[aggregate.RunResult]] = {}
    for folder, suffix in ((RUNS, ""), (NO_WARMUP, NO_WARMUP_LABEL)):
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            r = aggregate.read_run(os.path.join(folder, name))
            if r.status == "finished" and r.tag in ARMS:
                out.setdefault(ARMS[r.tag] + suffix, []).append(r)
    return out


def run_lines(runs: Dict[str, List[aggregate.RunResult]]) -> List[str]:
    """Every finished run: its seed, best and last top-1, what it cost and which code made it."""
    lines = ["", "Every finished run (CPU minutes: process CPU time over all epochs, from its runtime.json; commit: "
             "the code that ran it, and the code of any resumption):", "",
             "| arm | seed | best top-1 (epoch) | last top-1 | CPU minutes | wall minutes | threads | commit |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, rs in sorted(runs.items()):
        for r in sorted(rs, key=lambda r: r.seed if r.seed is not None else -1):
            data = provenance.read(r.path) or {}
            cost = provenance.cost_of(data)
            n = len(r.epochs)
            if cost is None:
                cpu = wall = "not recorded"
            else:
                missing = n - len(cost["epochs"] & set(r.epochs))
                note = f" ({missing} of {n} epochs not recorded)" if missing else ""
                cpu, wall = f"{cost['cpu_s'] / 60:.1f}{note}", f"{cost['wall_s'] / 60:.1f}{note}"
            commits = [data.get("mdistiller_ext_commit")] + [x.get("mdistiller_ext_commit") for x in data.get("resumed", [])]
            lines.append(f"| {arm} | {r.seed} | {r.best_top1:.2f} ({r.best_epoch}) | {r.last_top1:.2f} | {cpu} | {wall} | "
                         f"{data.get('cpu_threads', '?')} | {', '.join(dict.fromkeys(str(c)[:7] for c in commits))} |")
    return lines


def probe_lines(runs: Dict[str, List[aggregate.RunResult]]) -> List[str]:
    """How often the probe saw the task and distillation gradients conflict (cosine < 0), per arm, all seeds
    together: the per-epoch plot shows means, which can hide rare conflicting steps."""
    lines = ["", "Gradient-conflict probe (every 100th step, student's shared layers; all finished seeds of an arm "
             "together):", "", "| arm | measurements | mean cos, epoch 1 | mean cos, last epoch | cos < 0 | min cos |",
             "|---|---|---|---|---|---|"]
    for arm, rs in sorted(runs.items()):
        per_epoch: Dict[int, List[float]] = {}
        for r in rs:
            for e, v in aggregate.probe_epochs(r.path).items():
                per_epoch.setdefault(e, []).extend(v)
        if not per_epoch:
            continue
        every = [c for v in per_epoch.values() for c in v]
        first, last = per_epoch[min(per_epoch)], per_epoch[max(per_epoch)]
        conflicts = sum(c < 0 for c in every)
        lines.append(f"| {arm} | {len(every)} | {sum(first) / len(first):.2f} | {sum(last) / len(last):.2f} | "
                     f"{conflicts} ({100 * conflicts / len(every):.1f}%) | "
                     f"{min(every):.2f} |")
    # across arms, a measurement of one model state counts once: runs that share a seed, a student and a
    # teacher measure the same state at their first step (DHKD and DHKD + alignment, seed 0), and such a
    # measurement repeats to the last digit, which no two different states do
    distinct = {(r.seed, row["epoch"], row["step"], row["cos"]) for rs in runs.values() for r in rs
                for row in aggregate.probe_rows(r.path) if float(row["cos"]) == float(row["cos"])}
    if distinct:
        negative = sum(float(c) < 0 for *_, c in distinct)
        lines += ["", f"All arms together: {len(distinct)} distinct measurements (a state measured by two runs "
                      f"counts once), {negative} with cos < 0."]
    return lines


def fmt(xs: List[float]) -> str:
    m, s = mean_std(xs)
    return f"{m:.2f} ± {s:.2f} (n={len(xs)})" if len(xs) > 1 else f"{m:.2f} (n=1)"


def verdict(d: float, se: float, df: float, direction: int) -> str:
    """direction 1: the claim is a > b; -1: a < b; 0: a does not fall below b."""
    bar = t_critical(df) * se
    if direction == 0:
        return "contradicted (it hurts)" if d < -bar else "not contradicted (no harm detected at this size)"
    if direction * d > bar:
        return "supported"
    if direction * d < -bar:
        return "contradicted"
    return "cannot be resolved at this size"


def p_text(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def report() -> str:
    """claims.md's text, from the finished runs."""
    runs = finished_runs()
    arms = {arm: [r.best_top1 for r in rs] for arm, rs in runs.items()}
    claims = [("1", "every KD method beats the CE-only student", [(m, "CE-only student", 1) for m in ("KD", "DKD", "DHKD", "AEKT")]),
              ("2", "DHKD >= KD", [("DHKD", "KD", 1)]),
              ("3", "the single-head CE + BinaryKL ablation is clearly worse than DHKD", [("single-head CE + BinaryKL", "DHKD", -1)]),
              ("4", "AEKT >= DKD", [("AEKT", "DKD", 1)]),
              ("5", "gradient alignment does not hurt DHKD", [("DHKD + alignment", "DHKD", 0)]),
              # diagnostics, not paper claims: what the first round's missing warm-up did, and which factor of
              # the reconstruction cost AEKT accuracy without it
              ("w", "diagnostic: the warm-up helps DKD", [("DKD", "DKD (no warm-up)", 1)]),
              # two changes at once: the new AEKT arm has the warm-up and the options chosen on validation
              ("w2", "diagnostic: the warm-up with the options chosen on validation helps AEKT",
               [("AEKT", "AEKT (no warm-up)", 1)]),
              ("d1", "diagnostic (no warm-up): the ratio w costs AEKT accuracy",
               [("AEKT without the ratio (w = 1) (no warm-up)", "AEKT (no warm-up)", 1)]),
              ("d2", "diagnostic (no warm-up): the serialization layer costs AEKT accuracy",
               [("AEKT without the serialization layer (no warm-up)", "AEKT (no warm-up)", 1)])]
    lines = ["# Claims, as far as the finished runs go", "",
             "Best-epoch test top-1 (%) on the CIFAR-10 JPEG copy's full test set; difference of means ± its "
             "standard error and degrees of freedom; a two-sided t-test at the 5% level decides (Welch's where both "
             "sides have several runs; see claims.py). Generated by `python "
             "docs/cifar10_study/claims.py` from the committed runs.", "",
             "| arm | runs |", "|---|---|"]
    lines += [f"| {arm} | {fmt(v)} |" for arm, v in sorted(arms.items())]
    lines += ["", "| claim | comparison | difference ± SE (df; bar) | p (two-sided) | verdict |", "|---|---|---|---|---|"]
    for num, text, pairs in claims:
        for a, b, direction in pairs:
            if a not in arms or b not in arms:
                lines.append(f"| ({num}) {text} | {a} vs {b} | not run yet | - | - |")
                continue
            cmp = welch(arms[a], arms[b])
            if cmp is None:
                lines.append(f"| ({num}) {text} | {a} vs {b} | {mean_std(arms[a])[0] - mean_std(arms[b])[0]:+.2f} (no spread "
                             "known: one run each) | - | cannot be resolved at this size |")
                continue
            d, se, df = cmp
            lines.append(f"| ({num}) {text} | {a} vs {b} | {d:+.2f} ± {se:.2f} (df {df:.2f}; "
                         f"bar {t_critical(df) * se:.2f}) | {p_text(two_sided_p(d, se, df))} | {verdict(d, se, df, direction)} |")
    lines += run_lines(runs)
    lines += probe_lines(runs)
    return "\n".join(lines) + "\n"


def main() -> int:
    text = report()
    path = os.path.join(HERE, "claims.md")
    with open(path, "w") as f:
        f.write(text)
    print(text, end="")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

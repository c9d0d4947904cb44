"""The CIFAR-100 study's claims, assessed from its run directories: writes claims.md and claims.png beside this file.

python docs/cifar100_study/claims.py        (after: python tools/compare.py --sweep docs/cifar100_study/sweep.yaml)

The claims are the ones the study's README wrote down before its runs. For each arm: the best-epoch
and last-epoch test top-1 (mean ± sample std over seeds). For each claim, on both: the difference of
the means with its 95% interval, Welch's two-sided t-test, the raw p-value and Holm's adjustment over
the family of claims, and the verdict from the adjusted p-value (mdistiller_ext.reporting.claims).
Then the baselines' single-seed rows (no claim: each beside KD's and DKD's run of its seed), the side-by-side table with the CIFAR-10 study for every arm both have (same pair, same
schedule; the teachers differ), with each arm's gain over its CE-only student (cifar10_vs_cifar100.png
draws it), every run's cost and commit, and the gradient-conflict probe.
Nothing here is tuned.
"""
import os
import sys
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from mdistiller_ext.reporting import aggregate  # noqa: E402
from mdistiller_ext.reporting.claims import (Assessed, Claim, arm_values, arms_table, assess,  # noqa: E402
                                             claims_table, fmt, plot_claims, probe_lines, run_lines, study_runs,
                                             write_page)

RUNS = os.path.join(HERE, "runs")
CIFAR10_RUNS = os.path.join(os.path.dirname(HERE), "cifar10_study", "runs")
# study config TAG -> what the claims call it (the CIFAR-10 study's shared arms carry the same TAGs)
ARMS = {"vanilla,resnet8": "CE-only student", "kd,resnet20,resnet8": "KD", "dkd,resnet20,resnet8": "DKD",
        "dhkd,resnet20,resnet8": "DHKD", "aekt,resnet20,resnet8": "AEKT",
        "dhkd_one_head_bkl,resnet20,resnet8": "single-head CE + BinaryKL",
        "dhkd_one_head_bkl_norm,resnet20,resnet8": "single-head CE + BinaryKL-Norm",
        "dhkd_align,resnet20,resnet8": "DHKD + alignment", "reviewkd,resnet20,resnet8": "ReviewKD"}

CLAIMS = [
    *(Claim(f"1{x}", "every KD method beats the CE-only student", m, "CE-only student", 1)
      for x, m in zip("abcde", ("KD", "DKD", "DHKD", "AEKT", "ReviewKD"))),
    Claim("2", "DHKD >= KD", "DHKD", "KD", 1),
    Claim("3a", "the single-head CE + BinaryKL ablation is worse than DHKD", "single-head CE + BinaryKL", "DHKD", -1),
    Claim("3b", "it collapses: below the CE-only student", "single-head CE + BinaryKL", "CE-only student", -1),
    Claim("4a", "the loss, on one head: BinaryKL-Norm beats BinaryKL", "single-head CE + BinaryKL-Norm",
          "single-head CE + BinaryKL", 1),
    Claim("4b", "the second head, with the same loss: DHKD beats one head", "DHKD", "single-head CE + BinaryKL-Norm", 1),
    Claim("5", "AEKT >= DKD", "AEKT", "DKD", 1),
    Claim("6", "gradient alignment does not hurt DHKD", "DHKD + alignment", "DHKD", 0),
    Claim("7", "ReviewKD >= KD (mdistiller's published ordering)", "ReviewKD", "KD", 1),
]
# the CIFAR-10 study's teacher and the CIFAR-100 one: the two studies differ in this too
TEACHERS = ("resnet20 trained here for 30 epochs on the CIFAR-10 JPEG copy (85.96%)",
            "resnet20 from a public model zoo, `../shared/teachers/cifar100/resnet20.pth` (68.83%)")


# the baselines' single-seed rows (issue 28; sweep_baselines.yaml, queued after the study's runs, into the same
# runs folder): set beside the study's arms, with no claim made on them
BASELINES = {"crd,resnet20,resnet8": "CRD", "kd_logit_stand,resnet20,resnet8": "KD + LS",
             "dist,resnet20,resnet8": "DIST", "ttm,resnet20,resnet8": "TTM"}
# the study arms each baseline row is compared with at its own seed
BESIDE = ("KD", "DKD")


def finished_runs(folder: str = RUNS, arms: Optional[Dict[str, str]] = None) -> Dict[str, List[aggregate.RunResult]]:
    return study_runs([(folder, "")], ARMS if arms is None else arms)


BASE = "CE-only student"


def gains(values: Dict[str, List[float]]) -> Dict[str, Assessed]:
    """Every arm's gain over the study's CE-only student (difference of means, Welch's 95% interval): a
    description beside the claims, not one of them (its p-values are no part of any family)."""
    compared = [Claim("gain", "", arm, BASE, 1) for arm in values if arm != BASE]
    return {a.claim.a: a for a in assess(values, compared) if a.missing != "not run yet"}


def gain_text(a: Optional[Assessed]) -> str:
    if a is None:
        return "-"
    return f"{a.d:+.2f} [{a.interval[0]:+.2f}, {a.interval[1]:+.2f}]" if a.interval else f"{a.d:+.2f} (one run)"


def baseline_lines(baselines: Dict[str, List[aggregate.RunResult]],
                   runs: Dict[str, List[aggregate.RunResult]]) -> List[str]:
    """The baselines' single-seed rows beside the study's arms: each row's difference from KD's and DKD's run of
    the same seed (both epochs), and the study arms whose best-epoch range over seeds holds its best top-1. One
    seed has no spread of its own: no test, no verdict."""
    lines = ["", "The baselines' single-seed rows (`sweep_baselines.yaml`, run after the study's runs, and DIST's "
             "seed 1 from `sweep_dist_check.yaml`, a check of its seed-0 row; no claim is made on them, a row per "
             "run). One seed shows a number on this setting and that the method trains; it cannot "
             "resolve a difference smaller than an arm's spread over seeds, so a row is set beside the study's "
             "arms only as a description: its difference from KD's and DKD's run of the same seed (best / last "
             "epoch), and the arms whose best-epoch range over their seeds (min to max) holds its best top-1.", ""]
    missing = [name for name in BASELINES.values() if name not in baselines]
    if len(missing) == len(BASELINES):
        return lines + [f"No baseline run has finished yet ({', '.join(missing)}: queued)."]
    by_seed = {arm: {r.seed: r for r in runs.get(arm, [])} for arm in BESIDE}
    lines += ["| baseline | seed | best top-1 (epoch) | last top-1 | "
              + " | ".join(f"minus {arm}, same seed" for arm in BESIDE) + " | inside the seed range of |",
              "|---|---|---|---|" + "---|" * len(BESIDE) + "---|"]
    for name in BASELINES.values():
        for r in sorted(baselines.get(name, []), key=lambda r: r.seed if r.seed is not None else -1):
            cells = []
            for arm in BESIDE:
                other = by_seed[arm].get(r.seed)
                cells.append("-" if other is None else
                             f"{r.best_top1 - other.best_top1:+.2f} / {r.last_top1 - other.last_top1:+.2f}")
            inside = [arm for arm in ARMS.values() if len(runs.get(arm, [])) > 1
                      and min(x.best_top1 for x in runs[arm]) <= r.best_top1 <= max(x.best_top1 for x in runs[arm])]
            lines.append(f"| {name} | {r.seed} | {r.best_top1:.2f} ({r.best_epoch}) | {r.last_top1:.2f} | "
                         + " | ".join(cells) + f" | {', '.join(inside) or 'none'} |")
    if missing:
        lines += ["", f"Not finished yet: {', '.join(missing)}."]
    return lines


def side_by_side(c100: Dict[str, List[aggregate.RunResult]], c10: Dict[str, List[aggregate.RunResult]]) -> List[str]:
    """Every arm both studies ran, CIFAR-10 beside CIFAR-100, and each arm's gain over its CE-only student."""
    (b100, l100), (b10, l10) = arm_values(c100), arm_values(c10)
    g10, g100 = gains(b10), gains(b100)
    shared = [a for a in ARMS.values() if a in b10]  # the CIFAR-10 study ran no ReviewKD or one-head BinaryKL-Norm arm
    lines = ["", "What 100 classes change: every arm both studies ran (resnet20 -> resnet8, the same 15-epoch schedule; "
             f"CIFAR-10's teacher: {TEACHERS[0]}; CIFAR-100's: {TEACHERS[1]}). Gain: the arm's best-epoch mean minus "
             "its study's CE-only student's, with Welch's 95% interval (a description, not a claim: no test and no "
             "adjustment; [`cifar10_vs_cifar100.png`](cifar10_vs_cifar100.png) draws it for both epochs).", "",
             "| arm | CIFAR-10 best | CIFAR-10 last | gain | CIFAR-100 best | CIFAR-100 last | gain |",
             "|---|---|---|---|---|---|---|"]
    for a in shared:
        lines.append(f"| {a} | {fmt(b10.get(a, []))} | {fmt(l10.get(a, []))} | {gain_text(g10.get(a))} | "
                     f"{fmt(b100.get(a, [])) if a in b100 else 'not run yet'} | {fmt(l100.get(a, []))} | "
                     f"{gain_text(g100.get(a))} |")
    return lines


def plot_side_by_side(c100: Tuple[Dict[str, List[float]], Dict[str, List[float]]],
                      c10: Tuple[Dict[str, List[float]], Dict[str, List[float]]],
                      path: str) -> List[Tuple[str, str, str, float, Optional[tuple]]]:
    """cifar10_vs_cifar100.png: each shared arm's gain over its study's CE-only student on CIFAR-10 and on
    CIFAR-100 with the 95% interval, best epoch on the left and last epoch on the right. Absolute accuracies
    differ by 30 points between the datasets; the gains are what can be set side by side. Returns what it
    drew, (arm, dataset, epoch, gain, interval or None), in drawing order."""
    plt = aggregate._plt()
    gained = {(dataset, i): gains(values[i]) for dataset, values in (("CIFAR-10", c10), ("CIFAR-100", c100))
              for i in (0, 1)}
    arms = [a for a in ARMS.values() if a in gained[("CIFAR-10", 0)] and a in gained[("CIFAR-100", 0)]]
    fig, panels = plt.subplots(1, 2, figsize=(11, 0.5 * max(len(arms), 3) + 1.6), dpi=100, sharey=True)
    drawn: List[Tuple[str, str, str, float, Optional[tuple]]] = []
    for panel, epoch, i in ((panels[0], "best", 0), (panels[1], "last", 1)):
        for dataset, dy, colour in (("CIFAR-10", -0.12, "tab:blue"), ("CIFAR-100", 0.12, "tab:orange")):
            g = gained[(dataset, i)]
            for y, arm in enumerate(arms):
                a = g[arm]
                if a.interval is not None:
                    panel.plot(a.interval, [y + dy, y + dy], color=colour, linewidth=2)
                panel.scatter([a.d], [y + dy], s=26, color=colour if a.interval else "none", edgecolors=colour,
                              label=dataset if y == 0 else None)
                drawn.append((arm, dataset, epoch, a.d, a.interval))
        panel.axvline(0.0, color="black", linewidth=0.8)
        panel.set_xlabel("gain over the CE-only student (points)")
        panel.set_title(f"{epoch} epoch", fontsize=9)
        panel.grid(axis="x", alpha=0.3)
    panels[0].set_yticks(range(len(arms)))
    panels[0].set_yticklabels(arms, fontsize=8)
    panels[0].invert_yaxis()
    panels[1].legend(fontsize=8, loc="upper right")
    fig.suptitle("What 100 classes change: resnet20 -> resnet8, the same 15-epoch schedule (the teachers differ: "
                 "see claims.md)\neach arm's gain over its study's CE-only student, with Welch's 95% interval "
                 "(unadjusted; hollow: one run, no interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn


def report(runs: Optional[Dict[str, List[aggregate.RunResult]]] = None,
           cifar10: Optional[Dict[str, List[aggregate.RunResult]]] = None,
           baselines: Optional[Dict[str, List[aggregate.RunResult]]] = None) -> str:
    """claims.md's text, from the finished runs of this study, its baseline rows and the CIFAR-10 study (each read
    here unless given)."""
    runs = finished_runs() if runs is None else runs
    cifar10 = finished_runs(CIFAR10_RUNS) if cifar10 is None else cifar10
    baselines = finished_runs(RUNS, BASELINES) if baselines is None else baselines
    best, last = arm_values(runs)
    lines = ["# CIFAR-100 study: the claims, as far as the finished runs go", "",
             "Test top-1 (%) on CIFAR-100's 10,000 test images, of the best epoch (as the host and the papers report it; "
             "that epoch is chosen on the test set) and of the last epoch (chosen by nothing). Each claim (written down "
             "in README.md before the runs): the difference of the arms' means with its 95% interval (not adjusted "
             "for the family; the verdict is), Welch's two-sided "
             "t-test (an arm with a single run has no spread of its own and is not tested), the raw p-value and "
             f"Holm's adjustment over the family of the {len(CLAIMS)} claim comparisons written down (one without "
             "a test yet counts as p = 1; each epoch choice apart); \"supported\" or \"contradicted\" only where "
             "the adjusted p is below 0.05, else \"not resolved\". Generated by `python docs/cifar100_study/claims.py` "
             "from the committed runs.", ""]
    if runs:
        lines += arms_table(best, last)
    else:
        lines.append("No run has finished yet.")
    lines += [""] + claims_table(best, last, CLAIMS)
    lines += baseline_lines(baselines, runs)
    lines += side_by_side(runs, cifar10)
    every = {**runs, **baselines}
    if every:
        lines += run_lines(every) + probe_lines(every)
    return "\n".join(lines) + "\n"


def main() -> int:
    # each study's runs read once: the page and the figures come from the same runs
    runs, cifar10, baselines = finished_runs(), finished_runs(CIFAR10_RUNS), finished_runs(RUNS, BASELINES)
    best, last = arm_values(runs)
    plot_claims(best, last, CLAIMS, os.path.join(HERE, "claims.png"),
                "CIFAR-100 study (resnet20 -> resnet8, 15 epochs): every run, and every claim")
    if runs:
        plot_side_by_side((best, last), arm_values(cifar10), os.path.join(HERE, "cifar10_vs_cifar100.png"))
    return write_page(HERE, report(runs, cifar10, baselines))


if __name__ == "__main__":
    sys.exit(main())

"""The CIFAR-10 study's five claims, assessed from its run directories: writes claims.md and claims.png beside this file.

python docs/cifar10_study/claims.py        (after: python tools/compare.py --sweep docs/cifar10_study/sweep.yaml)

For each arm: the best-epoch and the last-epoch test top-1 (mean ± sample std over seeds). For each
claim, on both: the difference of the means with its 95% interval, Welch's two-sided t-test (exact t
quantiles for the fractional df; a single run is given the other side's spread), the raw p-value and
Holm's adjustment over the page's family, and a verdict from the adjusted p-value
(mdistiller_ext.reporting.claims). Then every run's seed, best and last top-1, cost and commit, and
the gradient-conflict probe per arm. Nothing here is tuned.
"""
import os
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from mdistiller_ext.reporting import aggregate  # noqa: E402
from mdistiller_ext.reporting.claims import (Claim, arm_values, arms_table, claims_table, plot_claims,  # noqa: E402
                                             probe_lines, run_lines, study_runs, write_page)

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
    return study_runs([(RUNS, ""), (NO_WARMUP, NO_WARMUP_LABEL)], ARMS)


CLAIMS = [
    *(Claim(f"1{x}", "every KD method beats the CE-only student", m, "CE-only student", 1)
      for x, m in zip("abcd", ("KD", "DKD", "DHKD", "AEKT"))),
    Claim("2", "DHKD >= KD", "DHKD", "KD", 1),
    # the DHKD paper's claim in two parts: the single head is worse, and "clearly" so (a collapse, below even
    # the CE-only student); the ablation changed the head and the loss at once (CE + BinaryKL on one head)
    Claim("3a", "the single-head CE + BinaryKL ablation is worse than DHKD", "single-head CE + BinaryKL", "DHKD", -1),
    Claim("3b", "it collapses: below the CE-only student", "single-head CE + BinaryKL", "CE-only student", -1),
    Claim("4", "AEKT >= DKD", "AEKT", "DKD", 1),
    Claim("5", "gradient alignment does not hurt DHKD", "DHKD + alignment", "DHKD", 0),
    # diagnostics, not paper claims: what the first round's missing warm-up did, and which factor of the
    # reconstruction cost AEKT accuracy without it (the new AEKT arm changed the warm-up and the options at once)
    Claim("w", "diagnostic: the warm-up helps DKD", "DKD", "DKD (no warm-up)", 1, "diagnostics"),
    Claim("w2", "diagnostic: the warm-up with the options chosen on validation helps AEKT", "AEKT", "AEKT (no warm-up)", 1,
          "diagnostics"),
    Claim("d1", "diagnostic (no warm-up): the ratio w costs AEKT accuracy",
          "AEKT without the ratio (w = 1) (no warm-up)", "AEKT (no warm-up)", 1, "diagnostics"),
    Claim("d2", "diagnostic (no warm-up): the serialization layer costs AEKT accuracy",
          "AEKT without the serialization layer (no warm-up)", "AEKT (no warm-up)", 1, "diagnostics"),
]


def report(runs: Optional[Dict[str, List[aggregate.RunResult]]] = None) -> str:
    """claims.md's text, from the finished runs (read here unless given)."""
    runs = finished_runs() if runs is None else runs
    best, last = arm_values(runs)
    lines = ["# Claims, as far as the finished runs go", "",
             "Test top-1 (%) on the CIFAR-10 JPEG copy's full test set, of the best epoch (as the host and the papers "
             "report it; that epoch is chosen on the test set) and of the last epoch (chosen by nothing). Each claim: "
             "the difference of the arms' means with its 95% interval (not adjusted for the family; the verdict "
             "is), Welch's two-sided t-test (an arm with a single "
             "run has no spread of its own and is not tested), the raw p-value and Holm's adjustment within its "
             f"family (the {sum(c.family == 'claims' for c in CLAIMS)} comparisons of the paper claims are one "
             f"family, the {sum(c.family == 'diagnostics' for c in CLAIMS)} diagnostics another, a comparison "
             "without a test counting as p = 1; each epoch choice apart); "
             "\"supported\" or \"contradicted\" only "
             "where the adjusted p is below 0.05. Generated by `python docs/cifar10_study/claims.py` from the "
             "committed runs.", ""]
    lines += arms_table(best, last)
    lines += [""] + claims_table(best, last, CLAIMS)
    lines += run_lines(runs)
    lines += probe_lines(runs)
    return "\n".join(lines) + "\n"


def main() -> int:
    runs = finished_runs()  # read once: the page and the figure come from the same runs
    best, last = arm_values(runs)
    plot_claims(best, last, CLAIMS, os.path.join(HERE, "claims.png"),
                "CIFAR-10 study (resnet20 -> resnet8, 15 epochs): every run, and every claim")
    return write_page(HERE, report(runs))


if __name__ == "__main__":
    sys.exit(main())

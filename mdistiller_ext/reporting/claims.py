"""A study's written-down claims, assessed from its runs (the studies' claims.py scripts use this).

Each claim compares two arms on the best-epoch test top-1 (what the host and the papers report: the
epoch is chosen on the test set) and on the last-epoch one (chosen by nothing): Welch's t-test, the
difference of the means with its 95% interval, the raw two-sided p-value and Holm's adjustment within
its family (a page's paper claims are one family, its diagnostics another; each epoch choice apart),
and a verdict that follows the adjusted p-value: "supported" or "contradicted" only below 5%. An arm
with a single run has no spread and gets no test; an untested comparison still counts in its family
(as p = 1), so the family is the one written down however few runs have landed.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from mdistiller_ext.reporting import aggregate
from mdistiller_ext.reporting.stats import holm, mean_std, t_critical, two_sided_p, welch
from mdistiller_ext.runs import provenance

ALPHA = 0.05


@dataclass(frozen=True)
class Claim:
    label: str      # "1a", "3b", ...
    text: str       # what is claimed
    a: str          # the arms compared, as the page names them
    b: str
    direction: int  # 1: a > b; -1: a < b; 0: a does not fall below b (no harm)
    family: str = "claims"  # Holm adjusts within a family: the paper's claims, or a page's diagnostics


@dataclass
class Assessed:
    claim: Claim
    d: Optional[float] = None     # mean(a) - mean(b)
    se: Optional[float] = None
    df: Optional[float] = None
    p: Optional[float] = None      # raw, two-sided
    p_holm: Optional[float] = None
    missing: str = ""              # why there is no test ("not run yet", "an arm with one run")

    @property
    def interval(self) -> Optional[tuple]:
        if self.se is None:
            return None
        half = t_critical(self.df) * self.se if self.se > 0 else 0.0
        return self.d - half, self.d + half

    @property
    def verdict(self) -> str:
        if self.p_holm is None:
            return "not resolved" if self.missing != "not run yet" else "-"
        significant = self.p_holm < ALPHA
        if self.claim.direction == 0:
            return "contradicted (it hurts)" if significant and self.d < 0 else "not contradicted"
        if not significant:
            return "not resolved"
        return "supported" if self.claim.direction * self.d > 0 else "contradicted"


def assess(values: Dict[str, List[float]], claims: Sequence[Claim]) -> List[Assessed]:
    """Every claim on ``values`` (arm -> one number per run), Holm-adjusted within its family over the claims
    that have a test."""
    out = []
    for c in claims:
        if c.a not in values or c.b not in values:
            out.append(Assessed(c, missing="not run yet"))
            continue
        cmp = welch(values[c.a], values[c.b])
        if cmp is None:
            out.append(Assessed(c, d=mean_std(values[c.a])[0] - mean_std(values[c.b])[0], missing="an arm with one run"))
            continue
        d, se, df = cmp
        out.append(Assessed(c, d, se, df, two_sided_p(d, se, df)))
    for family in dict.fromkeys(c.family for c in claims):
        members = [a for a in out if a.claim.family == family]
        # the family is every comparison written down, tested or not: one without a test yet counts as p = 1, so
        # a page with few runs adjusts as strictly as the finished one will (Holm over only the tests that could
        # run would loosen the early verdicts)
        for a, adjusted in zip(members, holm([1.0 if a.p is None else a.p for a in members])):
            a.p_holm = adjusted if a.p is not None else None
    return out


def p_text(p: Optional[float]) -> str:
    if p is None:
        return "-"
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _cell(a: Assessed) -> str:
    if a.missing == "not run yet":
        return "not run yet | - | - | -"
    if a.se is None:
        return f"{a.d:+.2f} (an arm with one run: no spread, no test) | - | - | not resolved"
    lo, hi = a.interval
    return f"{a.d:+.2f} [{lo:+.2f}, {hi:+.2f}] | {p_text(a.p)} | {p_text(a.p_holm)} | {a.verdict}"


def claims_table(best: Dict[str, List[float]], last: Dict[str, List[float]], claims: Sequence[Claim]) -> List[str]:
    """The claims' markdown table: each comparison on the best and on the last epoch."""
    lines = ["| claim | comparison | best epoch: difference [95% CI] | p | p (Holm) | verdict | "
             "last epoch: difference [95% CI] | p | p (Holm) | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for b, l in zip(assess(best, claims), assess(last, claims)):
        c = b.claim
        lines.append(f"| ({c.label}) {c.text} | {c.a} vs {c.b} | {_cell(b)} | {_cell(l)} |")
    return lines


VERDICT_COLOURS = {"supported": "tab:green", "contradicted": "tab:red", "contradicted (it hurts)": "tab:red"}


def plot_claims(best: Dict[str, List[float]], last: Dict[str, List[float]], claims: Sequence[Claim], path: str,
                title: str) -> List[Tuple[str, str, float, Optional[tuple]]]:
    """claims.png: on the left every run of every arm (best epoch filled, last epoch hollow; a bar at each
    mean), on the right each claim's difference with its 95% interval on both epochs (circle: best, square:
    last), coloured by the verdict (grey: not resolved; hollow, without a bar: an arm with one run, no test).

    The axes are zoomed to the numbers: differences of a fraction of a point, invisible on bars that start
    at zero, are what the claims are about. Returns what the right panel drew, (claim, epoch, difference,
    interval or None), in drawing order."""
    plt = aggregate._plt()
    arms = sorted(best)
    rows = [(b, l) for b, l in zip(assess(best, claims), assess(last, claims)) if b.missing != "not run yet"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.42 * max(len(arms), len(rows), 4) + 1.6), dpi=100,
                                      gridspec_kw={"width_ratios": [1, 1.25]})
    for y, arm in enumerate(arms):
        for values, hollow, dy in ((best[arm], False, -0.12), (last.get(arm, []), True, 0.12)):
            if not values:
                continue
            left.scatter(values, [y + dy] * len(values), s=22, marker="o",
                         facecolors="none" if hollow else "tab:blue", edgecolors="tab:blue")
            mean = sum(values) / len(values)
            left.plot([mean, mean], [y + dy - 0.1, y + dy + 0.1], color="black", linewidth=1.5)
    left.set_yticks(range(len(arms)))
    left.set_yticklabels([f"{a} (n={len(best[a])})" for a in arms], fontsize=8)
    left.invert_yaxis()  # arms read top-down in alphabetical order
    left.set_xlabel("test top-1 (%)")
    left.set_title("every run", fontsize=9)
    left.grid(axis="x", alpha=0.3)
    drawn: List[Tuple[str, str, float, Optional[tuple]]] = []
    for y, pair in enumerate(reversed(rows)):
        for a, epoch, dy, marker in ((pair[0], "best", 0.12, "o"), (pair[1], "last", -0.12, "s")):
            colour = VERDICT_COLOURS.get(a.verdict, "grey")
            ci = a.interval
            if ci is not None:
                right.plot(ci, [y + dy, y + dy], color=colour, linewidth=2)
            right.scatter([a.d], [y + dy], s=26, marker=marker, facecolors=colour if ci is not None else "none",
                          edgecolors=colour)
            drawn.append((a.claim.label, epoch, a.d, ci))
    right.axvline(0.0, color="black", linewidth=0.8)
    right.set_yticks(range(len(rows)))
    right.set_yticklabels([f"({b.claim.label}) {b.claim.a} vs {b.claim.b}" for b, _ in reversed(rows)], fontsize=8)
    right.yaxis.tick_right()
    right.set_xlabel("a minus b (points)")
    right.set_title("every claim: the difference with its 95% interval (unadjusted; the colour follows Holm)",
                    fontsize=9)
    right.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{title}\nleft: best epoch filled, last epoch hollow, bar at the mean; right: circle best epoch, "
                 "square last; green supported, red contradicted, grey not resolved (Holm-adjusted p); hollow: no test",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn


def fmt(xs: Sequence[float]) -> str:
    if not xs:
        return "-"
    m, s = mean_std(xs)
    return f"{m:.2f} ± {s:.2f} (n={len(xs)})" if len(xs) > 1 else f"{m:.2f} (n=1)"


def arms_table(best: Dict[str, List[float]], last: Dict[str, List[float]]) -> List[str]:
    """Each arm's best-epoch and last-epoch top-1 (mean ± sample std over its runs), and how much choosing the
    epoch on the test set moved it (mean of best minus last, per run)."""
    lines = ["| arm | best-epoch top-1 | last-epoch top-1 | best minus last |", "|---|---|---|---|"]
    for arm in sorted(best):
        gap = [b - l for b, l in zip(best[arm], last[arm])]
        lines.append(f"| {arm} | {fmt(best[arm])} | {fmt(last[arm])} | {sum(gap) / len(gap):+.2f} |")
    return lines


def arm_values(runs: Dict[str, List[aggregate.RunResult]]) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """(best-epoch, last-epoch) test top-1 per arm, run by run in the same order."""
    return ({arm: [r.best_top1 for r in rs] for arm, rs in runs.items()},
            {arm: [r.last_top1 for r in rs] for arm, rs in runs.items()})


def write_page(folder: str, text: str) -> int:
    """A study script's main: claims.md written into its folder, and shown."""
    path = os.path.join(folder, "claims.md")
    with open(path, "w") as f:
        f.write(text)
    print(text, end="")
    print(f"written to {path}")
    return 0


def study_runs(folders: Sequence[Tuple[str, str]], arms: Dict[str, str]) -> Dict[str, List[aggregate.RunResult]]:
    """A study's finished runs by arm: ``folders`` are (folder, label suffix) pairs (a suffix keeps a round of
    runs apart from another, e.g. " (no warm-up)"), ``arms`` maps a config TAG to the arm's name."""
    out: Dict[str, List[aggregate.RunResult]] = {}
    for folder, suffix in folders:
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            r = aggregate.read_run(os.path.join(folder, name))
            if r.status == "finished" and r.tag in arms:
                out.setdefault(arms[r.tag] + suffix, []).append(r)
    return out


def run_lines(runs: Dict[str, List[aggregate.RunResult]]) -> List[str]:
    """Every finished run: its seed, best and last top-1, what it cost and which code made it."""
    lines = ["", "Every finished run (cache hits: the share of teacher logits read from the teacher-logit cache, '-' "
             "where the teacher ran live or there is none; the cache holds one entry per augmented view, so the first "
             "run to meet a view pays for the teacher's forward pass on it and every later run reads it; CPU "
             "minutes: process CPU time over all epochs, from its runtime.json; commit: the code that ran it, and "
             "the code of any resumption):", "",
             "| arm | seed | best top-1 (epoch) | last top-1 | cache hits | CPU minutes | wall minutes | threads | commit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, rs in sorted(runs.items()):
        for r in sorted(rs, key=lambda r: r.seed if r.seed is not None else -1):
            data = provenance.read(r.path) or {}
            cpu, wall = aggregate.cost_cells(r, data, 60.0, 1)
            commits = [data.get("mdistiller_ext_commit")] + [x.get("mdistiller_ext_commit") for x in data.get("resumed", [])]
            lines.append(f"| {arm} | {r.seed} | {r.best_top1:.2f} ({r.best_epoch}) | {r.last_top1:.2f} | "
                         f"{aggregate.cache_hit_cell(r)} | {cpu} | {wall} | "
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

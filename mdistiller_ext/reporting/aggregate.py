"""Read run directories (this engine's or mdistiller's: same worklog) into a comparison table."""
import csv
import functools
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from yacs.config import CfgNode

from mdistiller_ext import registry
from mdistiller_ext.host import registration
from mdistiller_ext.runs import pooling, provenance
from mdistiller_ext.runs import worklog
from mdistiller_ext.reporting.stats import mean_std
from mdistiller_ext.config import flat_config
from mdistiller_ext.recipes import pair_of
from mdistiller_ext.errors import UserError
from mdistiller_ext.reporting.reference import ReferenceTable

SEED_IN_NAME = re.compile(r",EXT\.SEED:(\d+)")


@dataclass
class RunResult:
    path: str
    dataset: str
    method: str
    pair: str
    seed: Optional[int]
    status: str  # finished | incomplete | missing
    epochs: Dict[int, Dict[str, float]] = field(default_factory=dict)
    expected_epochs: Optional[int] = None
    best_epoch: Optional[int] = None
    best_top1: Optional[float] = None
    best_top5: Optional[float] = None
    last_top1: Optional[float] = None
    last_top5: Optional[float] = None
    # with EXT.VAL_SPLIT: the best validation top-1 and the test top-1 of that epoch (a choice made on
    # held-out data, beside the host's best-test-epoch number)
    best_val_top1: Optional[float] = None
    test_at_best_val: Optional[float] = None
    # what makes runs the same experiment: the config without the seed and number-neutral keys,
    # and the runtime record (route, precision, data path, zoo, versions)
    config: Optional[Dict[str, object]] = None
    tag: str = ""
    runtime: Dict[str, str] = field(default_factory=dict)


def method_and_pair(dataset: str, kind: str, teacher: str, student: str) -> Tuple[str, str]:
    """A method is named by its registry slug (its configs folder; the type in lower case for a method
    the registry does not know). A vanilla run of one network (teacher == student) is a teacher,
    listed apart from the methods; a vanilla run of a student (the CE-only baseline) is "vanilla"."""
    method = registry.find(kind.upper())
    name = method.slug if method is not None else kind.lower()
    if method is not None and not method.needs_teacher and teacher == student:
        return "teacher", student
    return name, pair_of(dataset, teacher, student)


def experiment_config(cfg: CfgNode) -> Dict[str, object]:
    """The flat config that defines the experiment: without the seed, keys that change no number and
    the config nodes of the other registered methods (a method reads only its own node, so a KD run's
    AEKT.W_MAX is whatever the defaults were that day). A key the saved config lacks was added after
    the run, and counts at its default: an option's default keeps what runs did before it existed."""
    skip = set(pooling.NUMBER_NEUTRAL_KEYS) | set(pooling.RESOLVED_KEYS) | {"EXT.SEED"}
    others = {m.name for m in registry.methods() if m.name != cfg.DISTILLER.TYPE}
    flat = {**_default_flat_config(), **flat_config(cfg)}
    return {k: v for k, v in flat.items() if k not in skip and k.split(".")[0] not in others}


@functools.lru_cache(maxsize=1)
def _default_flat_config() -> Dict[str, object]:
    return flat_config(registration.base_cfg())


def _identity(path: str, dataset_hint: Optional[str]) -> RunResult:
    """A RunResult's identity from config.yaml (and runtime.json), else from the host's naming."""
    cfg_path = os.path.join(path, "config.yaml")
    name = os.path.basename(os.path.normpath(path))
    runtime = pooling.pool_key(provenance.read(path))
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            cfg = CfgNode.load_cfg(f)
        ds = cfg.DATASET.TYPE
        seed = cfg.EXT.SEED if "EXT" in cfg else None
        experiment = cfg.get("EXPERIMENT") or {}
        method, pair = method_and_pair(ds, cfg.DISTILLER.TYPE, cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT)
        return RunResult(path, ds, method, pair,
                         seed, "missing", expected_epochs=cfg.SOLVER.EPOCHS, config=experiment_config(cfg),
                         tag=experiment.get("NAME") or experiment.get("TAG") or "", runtime=runtime)
    # mdistiller's runs: <project>/<method>,<teacher>,<student>[,KEY:VALUE...]
    project = os.path.basename(os.path.dirname(os.path.normpath(path)))
    ds = dataset_hint or project.split("_")[0]
    tokens = SEED_IN_NAME.sub("", name).split(",")
    m = SEED_IN_NAME.search(name)
    if tokens[0].lower() == "vanilla" and len(tokens) == 2:  # mdistiller's teacher runs: vanilla,<network>
        method, pair = "teacher", tokens[1]
    else:
        method, pair = tokens[0].lower(), f"{tokens[1]}_{tokens[2]}" if len(tokens) >= 3 else name
    # without a config, the run's name (less the seed) is all that says which experiment it is
    return RunResult(path, ds, method, pair, int(m.group(1)) if m else None, "missing",
                     config={"run name": SEED_IN_NAME.sub("", name)}, tag=SEED_IN_NAME.sub("", name), runtime=runtime)


def find_runs(folders) -> List[str]:
    """The run directories in or below ``folders`` (a run holds a worklog.txt or a config.yaml), so that
    ``--runs output`` and ``--runs 'output/*'`` find the runs inside project folders."""
    found = set()
    for folder in folders:
        if any(os.path.isfile(os.path.join(folder, f)) for f in ("worklog.txt", "config.yaml")):
            found.add(os.path.normpath(folder))
            continue
        for root, _, files in os.walk(folder):
            if "worklog.txt" in files or "config.yaml" in files:
                found.add(os.path.normpath(root))
    return sorted(found)


def read_run(path: str, dataset_hint: Optional[str] = None) -> RunResult:
    r = _identity(path, dataset_hint)
    log_path = os.path.join(path, "worklog.txt")
    if not os.path.isfile(log_path):
        return r
    log = worklog.read(log_path)
    r.status, r.epochs = "incomplete", log.epochs
    expected = r.expected_epochs
    if not log.epochs:
        return r
    complete = log.finished and (expected is None or log.last_epoch >= expected) and \
        sorted(log.epochs) == list(range(1, log.last_epoch + 1))
    r.status = "finished" if complete else "incomplete"
    r.best_epoch = log.best_epoch
    r.best_top1 = log.best_acc if log.finished else log.epochs[r.best_epoch].get("test_acc")
    r.best_top5 = log.epochs[r.best_epoch].get("test_acc_top5")
    last = log.epochs[log.last_epoch]
    r.last_top1, r.last_top5 = last.get("test_acc"), last.get("test_acc_top5")
    val_epoch = log.best_val_epoch
    if val_epoch is not None:
        r.best_val_top1, r.test_at_best_val = log.epochs[val_epoch]["val_acc"], log.epochs[val_epoch].get("test_acc")
    return r


REPORT_FILES = ("comparison.md", "comparison.csv", "bars.png")


def check_report_dir(out: str, replace: bool) -> None:
    """Refuse to write over an existing report (a committed example, say) unless asked to."""
    existing = [f for f in REPORT_FILES if os.path.exists(os.path.join(out, f))]
    if existing and not replace:
        raise UserError(f"{out} already holds a report ({', '.join(existing)}); choose another --out, or pass "
                        "--replace-report (replace_report: true in a sweep file) to write over it")


@dataclass
class Row:
    dataset: str
    pair: str
    method: str
    n: int
    stats: Dict[str, Tuple[float, float]]
    reference: Optional[float]
    reference_top5: Optional[float]
    source: str
    runs: List[RunResult]
    variant: str = ""    # what sets this row apart from the other rows of its method and pair
    runtime: str = ""    # how its runs were computed

    @property
    def label(self) -> str:
        return self.method + (f" [{self.variant}]" if self.variant else "")

    @property
    def compared_metric(self) -> str:
        """Published ImageNet numbers are last-epoch accuracies (the DHKD authors and mdistiller report the
        final model); CIFAR tables report the best epoch, as mdistiller's worklog does."""
        return "last_top1" if self.dataset == "imagenet" else "best_top1"

    @property
    def delta(self) -> Optional[float]:
        return None if self.reference is None else self.stats[self.compared_metric][0] - self.reference


METRICS = ("best_top1", "last_top1", "best_top5", "last_top5")
VAL_METRICS = ("best_val_top1", "test_at_best_val")  # shown where a row's runs have a validation split


def _frozen(d: Dict) -> Tuple:
    return tuple(sorted((k, str(v)) for k, v in d.items()))


def _variants(groups: List[Tuple[Dict, Dict, str]]) -> List[str]:
    """For groups of one method and pair: the config keys, runtime fields and TAGs that tell them apart."""
    if len(groups) < 2:
        return [""] * len(groups)
    keys = sorted({k for c, _, _ in groups for k in c})
    differing = [k for k in keys if len({str(c.get(k, "<absent>")) for c, _, _ in groups}) > 1]
    fields = sorted({k for _, rt, _ in groups for k in rt})
    rt_differing = [k for k in fields if len({rt.get(k) for _, rt, _ in groups}) > 1]
    tags = [t for _, _, t in groups]
    out = []
    for config, rt, tag in groups:
        models = {config.get("DISTILLER.TEACHER"), config.get("DISTILLER.STUDENT")}
        parts = [",".join(p for p in tag.split(",") if p not in models)] if len(set(tags)) > 1 else []
        parts += [f"{k}={config.get(k, '<absent>')}" for k in differing]
        parts += [f"{k}={rt.get(k)}" for k in rt_differing]
        out.append(", ".join(parts))
    return out


def published(refs: ReferenceTable, dataset: str, pair: str, method: str, tag: str, alone: bool):
    """The published number a row is compared with: a method's own recipe (its standard TAG, or the method's
    only row) takes the method's; an ablation (TAG "<slug>_ablation,<name>,...") takes "<slug>_<name>"'s where
    the table has one (KD + logit standardisation: kd_logit_stand), never its method's; anything else none."""
    parts = tag.split(",")
    if parts[0] == f"{method}_ablation" and len(parts) > 1:
        return refs.lookup(dataset, pair, f"{method}_{parts[1]}")
    return refs.lookup(dataset, pair, method) if alone or parts[0] == method else None


def summarize(results: Sequence[RunResult], refs: ReferenceTable, pool_runtimes: bool = False) -> List[Row]:
    """One row per experiment: runs pool only when their configs are equal but for EXT.SEED and keys
    that change no number, and (unless ``pool_runtimes``) they were computed the same way."""
    groups: Dict[Tuple, List[RunResult]] = {}
    for r in results:
        if r.status == "finished":
            runtime = () if pool_runtimes else _frozen(r.runtime)
            groups.setdefault((r.dataset, r.pair, r.method, _frozen(r.config or {}), runtime), []).append(r)
    by_method: Dict[Tuple[str, str, str], List[Tuple]] = {}
    for key in groups:
        by_method.setdefault(key[:3], []).append(key)
    rows = []
    for (ds, pair, method), keys in sorted(by_method.items()):
        keys.sort(key=lambda k: (groups[k][0].tag, k))
        described = [(groups[k][0].config or {}, {} if pool_runtimes else groups[k][0].runtime, groups[k][0].tag)
                     for k in keys]
        for key, variant in zip(keys, _variants(described)):
            runs = groups[key]
            stats = {}
            for m in METRICS + VAL_METRICS:
                vals = [getattr(r, m) for r in runs if getattr(r, m) is not None]
                if vals:
                    stats[m] = mean_std(vals)
            ref = published(refs, ds, pair, method, groups[key][0].tag, alone=len(keys) == 1)
            runtimes = sorted({pooling.summary(r.runtime) for r in runs}) if runs[0].runtime else ["not recorded"]
            rows.append(Row(ds, pair, method, len(runs), stats, ref.top1 if ref else None,
                            ref.top5 if ref else None, ref.source if ref else "", runs, variant, "; ".join(runtimes)))
    return rows


def recipe_changes(row: Row) -> str:
    """What the row's runs set beyond the shipped config of their method and pair (SOLVER.EPOCHS=5, ...): a
    reader of the table sees a shortened or altered recipe without opening a run; '-' for none, 'n/a' where
    no shipped config exists (a plug-in without a recipe, a pair outside the tables)."""
    from mdistiller_ext.generate import method_config, vanilla_config
    from mdistiller_ext.recipes import PAIR_TABLES

    run = row.runs[0]
    if run.config is None:
        return "n/a"
    method = registry.by_slug(row.method)
    try:
        if row.method == "teacher":
            shipped = vanilla_config(row.dataset, row.pair)
        elif row.method == "vanilla" and row.pair in PAIR_TABLES.get(row.dataset, {}):
            shipped = vanilla_config(row.dataset, PAIR_TABLES[row.dataset][row.pair].student)
        elif method is not None and method.recipe is not None and row.pair in PAIR_TABLES.get(row.dataset, {}):
            shipped = method_config(row.dataset, row.method, row.pair)
        else:
            return "n/a"
    except (UserError, KeyError):
        return "n/a"
    cfg = registration.base_cfg()
    cfg.merge_from_other_cfg(CfgNode(shipped))
    base = experiment_config(cfg)
    changed = [f"{k}={v}" for k, v in sorted(run.config.items()) if base.get(k) != v and not k.startswith("DISTILLER.")]
    return ", ".join(changed) or "-"


def _fmt(stat: Optional[Tuple[float, float]], n: int) -> str:
    # one run has no spread: "± 0.00" would claim one
    if stat is None:
        return "n/a"
    return f"{stat[0]:.2f}" if n == 1 else f"{stat[0]:.2f} ± {stat[1]:.2f}"


HEADER = ["dataset", "pair", "method", "seeds", "best top-1", "last top-1", "best top-5", "last top-5",
          "published top-1", "source", "delta vs published", "computed by", "beyond the shipped config"]


VAL_HEADER = ["best val top-1", "test top-1 at best val"]


def _has_val(rows: Sequence[Row]) -> bool:
    return any(m in r.stats for r in rows for m in VAL_METRICS)


def table_rows(rows: Sequence[Row]) -> List[List[str]]:
    val = _has_val(rows)
    out = []
    for r in rows:
        out.append([r.dataset, r.pair, r.label, str(r.n)] + [_fmt(r.stats.get(m), r.n) for m in METRICS] +
                   ([_fmt(r.stats.get(m), r.n) for m in VAL_METRICS] if val else []) +
                   ["n/a" if r.reference is None else f"{r.reference:.2f}", r.source or "-",
                    "n/a" if r.delta is None else f"{r.delta:+.2f}", r.runtime, recipe_changes(r)])
    return out


def write_markdown(rows: Sequence[Row], others: Sequence[RunResult], refs: ReferenceTable, path: str) -> str:
    teachers = [r for r in rows if r.method == "teacher"]
    rows = [r for r in rows if r.method != "teacher"]
    header = HEADER[:8] + VAL_HEADER + HEADER[8:] if _has_val(rows) else HEADER
    if rows:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    else:  # long runs half-way: the page says how far each got
        lines = ["No run has finished yet."]
    lines.append("")
    if teachers:
        lines += ["Teachers (vanilla training of the teacher networks):", "",
                  "| dataset | network | seeds | best top-1 | last top-1 | computed by | beyond the shipped config |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {t.dataset} | {t.pair}{f' [{t.variant}]' if t.variant else ''} | {t.n} | "
                  f"{_fmt(t.stats.get('best_top1'), t.n)} | {_fmt(t.stats.get('last_top1'), t.n)} | {t.runtime} | "
                  f"{recipe_changes(t)} |" for t in teachers]
        lines.append("")
    if _has_val(rows):
        lines.append("Best val = the epoch with the best validation top-1 (EXT.VAL_SPLIT, held out of the training set); "
                     "test top-1 at best val = that epoch's test accuracy, an epoch chosen without the test set.")
    lines.append("Top-1/top-5 in %, mean ± sample standard deviation over seeds (a single run: its value, no spread); best = best epoch, last = final epoch. "
                 "Delta vs published: the best epoch on CIFAR, the last epoch on ImageNet (as those papers report).")
    used = sorted({r.source for r in rows if r.source})
    for key in used:
        lines.append(f"- `{key}`: {refs.sources[key]}")
    lines += [""] + run_records([run for r in rows + teachers for run in r.runs] + list(others))
    if others:
        lines += ["", "Runs left out (not finished):", ""]
        lines += [f"- {r.status}: {r.path} ({len(r.epochs)} of {r.expected_epochs or '?'} epochs logged)" for r in others]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def _teacher_cell(data: Dict) -> str:
    teacher = data.get("teacher")
    if isinstance(teacher, dict):
        acc = teacher.get("test_acc")
        return os.path.basename(str(teacher.get("path", "?"))) + (f" ({acc:.2f})" if isinstance(acc, (int, float)) else "")
    return os.path.basename(str(teacher)) if teacher else "-"


def cost_cells(run: RunResult, data: Dict, unit_s: float, digits: int) -> Tuple[str, str]:
    """(CPU, wall) time of a run in units of ``unit_s`` seconds from its runtime record, saying how many of its
    logged epochs the record misses (a run stopped before cost was recorded per epoch). For a run not finished,
    also its time over all its expected epochs at the rate of the epochs recorded so far: a rate, not a
    measurement (a run that fills the teacher-logit cache is slower than one reading it, and the load changes)."""
    cost = provenance.cost_of(data)
    if cost is None:
        return "not recorded", "not recorded"
    missing = len(set(run.epochs) - cost["epochs"])
    note = f" ({missing} of {len(run.epochs)} epochs not recorded)" if missing else ""
    scale = run.expected_epochs / len(cost["epochs"]) if (run.status != "finished" and run.expected_epochs
                                                          and cost["epochs"]) else None
    cells = []
    for key in ("cpu_s", "wall_s"):
        ahead = "" if scale is None else f"; {run.expected_epochs} epochs at this rate: {cost[key] * scale / unit_s:.{digits}f}"
        cells.append(f"{cost[key] / unit_s:.{digits}f}{note}{ahead}")
    return cells[0], cells[1]


def cache_hit_cell(run: RunResult) -> str:
    """The share of teacher logits a run read from the teacher-logit cache, mean over its epochs; '-' where no
    epoch logged one (the teacher ran live, or there is no teacher)."""
    hits = [e["teacher_cache_hit"] for e in run.epochs.values() if "teacher_cache_hit" in e]
    return f"{sum(hits) / len(hits):.1f}%" if hits else "-"


def run_records(runs: Sequence[RunResult]) -> List[str]:
    """Every run of a report, finished or not: how far it got, the teacher file it learned from, the share of
    teacher logits it read from the cache, and what it cost, from its worklog and runtime.json."""
    lines = ["Every run (teacher: the file and its recorded test top-1; cache hits: the share of teacher logits read "
             "from the teacher-logit cache, mean over the run's epochs, '-' where the teacher ran live; CPU and wall "
             "hours: the process's, over the epochs its runtime.json records, and for a run not finished, all its "
             "epochs at the rate of those: a projection, not a measurement):", "",
             "| run | seed | epochs | best top-1 (epoch) | last top-1 | teacher | cache hits | CPU hours | wall hours |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.dataset, r.pair, r.method, r.tag, -1 if r.seed is None else r.seed)):
        data = provenance.read(r.path) or {}
        cpu, wall = cost_cells(r, data, 3600.0, 2)
        best = "-" if r.best_top1 is None else f"{r.best_top1:.2f} ({r.best_epoch})"
        last = "-" if r.last_top1 is None else f"{r.last_top1:.2f}"
        lines.append(f"| {r.tag or os.path.basename(r.path)} | {r.seed if r.seed is not None else '-'} | "
                     f"{len(r.epochs)}/{r.expected_epochs or '?'} | {best} | {last} | {_teacher_cell(data)} | "
                     f"{cache_hit_cell(r)} | {cpu} | {wall} |")
    return lines


def write_csv(rows: Sequence[Row], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        metrics = METRICS + (VAL_METRICS if _has_val(rows) else ())
        w.writerow(["dataset", "pair", "method", "label", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")] +
                   ["published_top1", "published_top5", "source", "delta_vs_published", "compared_metric", "computed_by",
                    "beyond_shipped_config"])
        for r in rows:
            cells = [r.dataset, r.pair, r.method, r.label, r.n]
            for m in metrics:
                cells += ([f"{r.stats[m][0]:.4f}", f"{r.stats[m][1]:.4f}" if r.n > 1 else ""] if m in r.stats
                          else ["", ""])
            cells += ["" if r.reference is None else r.reference, "" if r.reference_top5 is None else r.reference_top5,
                      r.source, "" if r.delta is None else f"{r.delta:.4f}", r.compared_metric, r.runtime, recipe_changes(r)]
            w.writerow(cells)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_per_epoch(rows: Sequence[Row], path_for_pair, series, ylabel: str, title: str, zero_line: bool = False
                    ) -> List[str]:
    """One PNG per pair: for each row, ``series(run)`` ({epoch: value}, or empty) averaged over the row's
    runs on the epochs they share, with a min..max band; pairs without any series are skipped."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    written = []
    for (ds, pair) in sorted({(r.dataset, r.pair) for r in rows}):
        lines = []
        for r in (x for x in rows if (x.dataset, x.pair) == (ds, pair)):
            per_run = [c for c in (series(run) for run in r.runs) if c]
            if per_run:
                lines.append((r, per_run))
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        for r, per_run in lines:
            epochs = sorted(set.intersection(*[set(c) for c in per_run]))
            mean = [sum(c[e] for c in per_run) / len(per_run) for e in epochs]
            line, = ax.plot(epochs, mean, label=f"{r.label} (n={len(per_run)})", marker="o" if len(epochs) < 30 else None)
            if len(per_run) > 1:
                ax.fill_between(epochs, [min(c[e] for c in per_run) for e in epochs],
                                [max(c[e] for c in per_run) for e in epochs], alpha=0.2, color=line.get_color())
        if zero_line:
            ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ds} {pair}: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = path_for_pair(ds, pair)
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_curves(rows: Sequence[Row], path_for_pair) -> List[str]:
    """One PNG per pair: test top-1 per epoch, mean over seeds (band: min to max where a line has several)."""
    title = ("test accuracy (one run per line)" if all(r.n == 1 for r in rows)
             else "test accuracy (mean over seeds; band: min..max over seeds)")
    return _plot_per_epoch(rows, path_for_pair, lambda run: {e: v["test_acc"] for e, v in run.epochs.items()},
                           "test top-1 (%)", title)


def bars_title(rows: Sequence[Row]) -> str:
    """What the bars and their error bars are, for the number of seeds they actually hold."""
    seeds = sorted({r.n for r in rows})
    if seeds == [1]:
        return "one seed per bar (no spread)"
    spread = f"mean ± std over {seeds[0]} seeds" if len(seeds) == 1 else f"mean ± std over {seeds[0]}-{seeds[-1]} seeds (n in the legend)"
    return spread + (" (black line: published)" if any(r.reference is not None for r in rows) else "")


def plot_bars(rows: Sequence[Row], path: str) -> str:
    """Best-epoch top-1 per pair and method (teachers left out), with standard-deviation error bars and,
    where there are published numbers, black marks; the axis starts at 0 so that bar lengths compare."""
    plt = _plt()
    rows = [r for r in rows if r.method != "teacher"]
    if not rows:
        return ""
    pairs = sorted({(r.dataset, r.pair) for r in rows})
    methods = sorted({r.label for r in rows})
    width = min(0.8 / max(len(methods), 1), 0.3)  # one method alone is a bar, not a wall
    # the legend goes below the axes, one row per label: never over a bar, and the axes keep their width
    labels_width = 0.07 * max(len(m) for m in methods) + 0.5
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(pairs) + 2, labels_width), 4.5 + 0.25 * len(methods)), dpi=100)
    for j, m in enumerate(methods):
        xs, means, stds, refs = [], [], [], []
        for i, p in enumerate(pairs):
            r = next((x for x in rows if (x.dataset, x.pair) == p and x.label == m), None)
            if r is None:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            means.append(r.stats["best_top1"][0])
            stds.append(r.stats["best_top1"][1])
            refs.append(r.reference)
        counts = sorted({x.n for x in rows if x.label == m})
        bars = ax.bar(xs, means, width, yerr=stds, capsize=3,
                      label=f"{m} (n={'/'.join(map(str, counts))})" if len(set(r.n for r in rows)) > 1 else m)
        for x, ref in zip(xs, refs):
            if ref is not None:
                ax.plot([x - width / 2, x + width / 2], [ref, ref], color="black", linewidth=2)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    for i, p in enumerate(pairs):  # the teacher each pair's runs learned from (its accuracy as their runs recorded it)
        for acc in sorted({a for r in rows if (r.dataset, r.pair) == p for a in teacher_accuracies(r)}):
            ax.plot([i - 0.45, i + 0.45], [acc, acc], color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"teacher {acc:.1f}", (i + 0.45, acc), fontsize=7, color="grey", ha="right", va="bottom")
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([f"{d}\n{p}" for d, p in pairs])
    ax.set_ylabel("best-epoch test top-1 (%)")
    ax.set_title(bars_title(rows))
    top = max([r.stats["best_top1"][0] + r.stats["best_top1"][1] for r in rows] + [a for r in rows for a in teacher_accuracies(r)])
    ax.set_ylim(0.0, min(100.0, top + 8))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def teacher_accuracies(row: Row) -> List[float]:
    """The test top-1 of the teacher files a row's runs learned from, as their runtime.json recorded it."""
    out = []
    for run in row.runs:
        teacher = (provenance.read(run.path) or {}).get("teacher")
        if isinstance(teacher, dict) and isinstance(teacher.get("test_acc"), (int, float)):
            out.append(float(teacher["test_acc"]))
    return out


def probe_rows(run_dir: str) -> List[Dict[str, str]]:
    """The probe's measurements of one run (grad_probe.csv rows: epoch, step, global_step, cos, norm_ratio)."""
    path = os.path.join(run_dir, "grad_probe.csv")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def probe_epochs(run_dir: str) -> Dict[int, List[float]]:
    """epoch -> the probe's cosine measurements of one run (grad_probe.csv), NaNs dropped."""
    out: Dict[int, List[float]] = {}
    for row in probe_rows(run_dir):
        cos = float(row["cos"])
        if cos == cos:
            out.setdefault(int(row["epoch"]), []).append(cos)
    return out


def plot_probe(rows: Sequence[Row], path_for_pair) -> List[str]:
    """One PNG per pair with probe data: the cosine of the task and distillation gradients per epoch
    (each run's mean per epoch), mean over seeds with a min..max band."""
    def series(run: RunResult) -> Dict[int, float]:
        return {e: sum(v) / len(v) for e, v in probe_epochs(run.path).items()}

    return _plot_per_epoch(rows, path_for_pair, series, "cos(g_task, g_kd) on the shared student parameters",
                           "gradient conflict (below 0: the gradients conflict)", zero_line=True)

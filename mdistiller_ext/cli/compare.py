"""Side-by-side comparison: run methods x pairs x seeds, then tabulate against published numbers.

  python tools/compare.py --dataset cifar10 --methods kd dkd dhkd --pairs res20_res8 --seeds 0 1 \\
      --set SOLVER.EPOCHS 3 EXT.TRAIN_SUBSET 5000 --out docs/example
  python tools/compare.py --sweep sweep.yaml                 # the same options from a yaml file, or
                                                            # explicit configs: runs: [{config, seeds, set}]
  python tools/compare.py ... --dry-run                      # print what would run
  python tools/compare.py --sweep sweep.yaml --jobs 2        # two runs at a time (teachers first)
  python tools/compare.py --runs output/cifar100_baselines/* --out report   # aggregate existing run dirs
                                                            # (this engine's or mdistiller's)
  python tools/compare.py --plugin my_method.py --methods mykd ... # a method from outside the package

Configs are read from ./configs (or --configs DIR); a method with a recipe but no config file there
(a plug-in, say) gets one written from its recipe under <out>/configs.

Finished runs are skipped, interrupted ones resumed, finished ones never overwritten. Writes
<out>/comparison.md, comparison.csv, bars.png and curves_<dataset>_<pair>.png.
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile

import yaml

from mdistiller_ext.reporting import aggregate
from mdistiller_ext.reporting import reference
from mdistiller_ext.host import registration
from mdistiller_ext.cli import sweep
from mdistiller_ext.errors import UserError

SWEEP_KEYS = {"dataset", "methods", "pairs", "seeds", "set", "out", "runs", "replace_report", "configs", "plugins",
              "jobs", "halt"}
HALT_KEYS = {"on_failure", "off_published"}
# written into --out when a sweep halts; while it is there the sweep refuses to start (a later session that
# restarts the queue must not walk past a finding nobody has looked at)
HALTED_FILE = "HALTED.txt"


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--sweep", help="yaml with dataset, methods, pairs, seeds, set (a mapping of overrides), out")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--methods", nargs="+")
    ap.add_argument("--pairs", nargs="+")
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--set", nargs="+", default=None, metavar="KEY VALUE", help="overrides for every run")
    ap.add_argument("--runs", nargs="+", help="aggregate these run directories (globs allowed) instead of planning runs")
    ap.add_argument("--out", default=None, help="report folder (default: comparison)")
    ap.add_argument("--configs", default=None, help="folder of configs/<dataset>/<method>/<pair>.yaml (default: ./configs)")
    ap.add_argument("--plugin", action="append", default=None, metavar="FILE_OR_MODULE",
                    help="a method module from outside the package (its runs load it too); repeatable")
    ap.add_argument("--jobs", type=int, default=None,
                    help="runs side by side (default 1); each gets cpu_count/jobs CPU threads unless OMP_NUM_THREADS "
                         "is set; a run waits for the planned run that makes its teacher")
    ap.add_argument("--halt-on-failure", action="store_true",
                    help="a run that fails stops the sweep (by default the other runs go on)")
    ap.add_argument("--halt-off-published", type=float, default=None, metavar="POINTS",
                    help="a run that finishes more than POINTS (best top-1) from its published number stops the sweep")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--no-run", action="store_true", help="only aggregate the planned runs that exist")
    ap.add_argument("--reference", default=reference.DEFAULT_PATH, help="reference-results yaml")
    ap.add_argument("--replace-report", action="store_true",
                    help="write the report over an existing one in --out (refused otherwise, e.g. a committed example)")
    ap.add_argument("--pool-runtimes", action="store_true",
                    help="pool runs of one config even when they were computed differently (route, precision, data "
                         "path, zoo, versions); by default such runs are separate rows")
    args = ap.parse_args(argv)
    args.config_runs = None
    halt = {"on_failure": args.halt_on_failure or None, "off_published": args.halt_off_published}
    if args.sweep:
        with open(args.sweep) as f:
            spec = yaml.safe_load(f) or {}
        unknown = set(spec) - SWEEP_KEYS
        if unknown:
            raise UserError(f"{args.sweep}: unknown keys {sorted(unknown)}; allowed: {sorted(SWEEP_KEYS)}")
        overrides = [str(x) for kv in (spec.get("set") or {}).items() for x in kv]
        args.config_runs = spec.get("runs")
        args.replace_report = args.replace_report or bool(spec.get("replace_report"))
        for key, value in (("dataset", spec.get("dataset")), ("methods", spec.get("methods")), ("pairs", spec.get("pairs")),
                           ("seeds", spec.get("seeds")), ("set", overrides or None), ("out", spec.get("out")),
                           ("configs", spec.get("configs")), ("plugin", spec.get("plugins")), ("jobs", spec.get("jobs"))):
            if getattr(args, key) is None and value is not None:
                setattr(args, key, value)
        given = spec.get("halt") or {}
        if not isinstance(given, dict) or set(given) - HALT_KEYS:
            raise UserError(f"{args.sweep}: halt takes a mapping with {sorted(HALT_KEYS)}; got {given!r}")
        halt = {k: given.get(k) if halt[k] is None else halt[k] for k in HALT_KEYS}  # the command line wins
    args.halt = halt
    if args.halt["off_published"] is not None and (isinstance(args.halt["off_published"], bool) or not
                                                   isinstance(args.halt["off_published"], (int, float))
                                                   or args.halt["off_published"] < 0):
        raise UserError(f"halt off_published must be a number of points >= 0; got {args.halt['off_published']!r}")
    args.out = args.out or "comparison"
    args.configs = args.configs or "configs"
    args.set = args.set or []
    args.jobs = 1 if args.jobs is None else args.jobs
    if not isinstance(args.jobs, int) or args.jobs < 1:
        raise UserError(f"jobs must be a whole number of at least 1; got {args.jobs!r}")
    if not args.runs and not args.config_runs and not (args.dataset and args.methods and args.pairs and args.seeds):
        raise UserError("give --dataset, --methods, --pairs and --seeds (or --sweep FILE), or --runs DIR...")
    if len(args.set) % 2:
        raise UserError(f"--set takes KEY VALUE pairs; got {len(args.set)} words")
    return args


def report(results, refs, out: str, pool_runtimes: bool = False) -> None:
    rows = aggregate.summarize(results, refs, pool_runtimes)
    others = [r for r in results if r.status != "finished"]
    if not rows and not others:  # nothing is written, not even the --out folder
        raise UserError("no finished runs to compare")
    os.makedirs(out, exist_ok=True)
    text = aggregate.write_markdown(rows, others, refs, os.path.join(out, "comparison.md"))
    if not rows:  # only runs half-way (e.g. the 240-epoch ones between sessions): how far each got, no table
        print(text)
        print(f"no run has finished: {out}/comparison.md lists how far each got")
        return
    aggregate.write_csv(rows, os.path.join(out, "comparison.csv"))
    aggregate.plot_bars(rows, os.path.join(out, "bars.png"))
    aggregate.plot_curves(rows, lambda ds, pair: os.path.join(out, f"curves_{ds}_{pair}.png"))
    probes = aggregate.plot_probe(rows, lambda ds, pair: os.path.join(out, f"probe_{ds}_{pair}.png"))
    print(text)
    print(f"report written to {out}/ (comparison.md, comparison.csv, bars.png, curves_*.png"
          + (", probe_*.png" if probes else "") + ")")


def halt_check(rules: dict, refs):
    """The sweep's halt rule as ``sweep.execute`` asks it: a failed run (``on_failure``), or a finished one whose
    best top-1 lies more than ``off_published`` points from the number published for its method and pair (a run
    with no published number is never off it); None where neither rule is set."""
    if not rules.get("on_failure") and rules.get("off_published") is None:
        return None

    def check(spec: sweep.RunSpec, ok: bool):
        if not ok:
            return "it failed" if rules.get("on_failure") else None
        if rules.get("off_published") is None:
            return None
        run = aggregate.read_run(spec.run_dir)
        ref = aggregate.published(refs, run.dataset, run.pair, run.method, run.tag, False)
        if ref is None or run.best_top1 is None or abs(run.best_top1 - ref.top1) <= rules["off_published"]:
            return None
        return (f"best top-1 {run.best_top1:.2f} is {run.best_top1 - ref.top1:+.2f} from the published {ref.top1:.2f} "
                f"({ref.source}), more than the {rules['off_published']} points the sweep allows")
    return check


def dry_run(specs, scratch, generated: str) -> int:
    """What would run, resume or be skipped, with the commands; configs generated from recipes are shown
    at the path a real run writes them to."""
    def shown(path: str) -> str:
        if scratch is not None and path.startswith(scratch + os.sep):
            path = os.path.join(generated, os.path.relpath(path, scratch))
        return os.path.relpath(path) if os.path.isabs(path) else path

    no_teacher = []
    for s in specs:
        state = sweep.status(s)
        action = {"finished": "skip", "partial": "resume", "missing": "run"}[state]
        words = {"finished": "finished", "partial": "partial", "missing": "not run yet"}[state]
        print(f"{words:12s} {s.label} -> {action} in {s.run_dir}")
        if action != "skip":
            print(f"             python {' '.join(shown(a) for a in sweep.command(s, state)[1:])}")
            missing = sweep.missing_teacher(s, specs)
            if missing:
                no_teacher.append(s)
                print(f"             warning: {missing}")
    if no_teacher:
        print(f"warning: {len(no_teacher)} of {len(specs)} runs need a teacher that does not exist yet "
              "(train it first, e.g. with the vanilla config named above)", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    try:
        args = parse(argv)
        if args.plugin:
            registration.add_plugins(args.plugin)
        refs = reference.load(args.reference)
        if args.runs:
            dirs = aggregate.find_runs(d for pattern in args.runs for d in glob.glob(pattern) if os.path.isdir(d))
            if not dirs:
                raise UserError(f"no run directories match {' '.join(args.runs)}")
            aggregate.check_report_dir(args.out, args.replace_report)
            report([aggregate.read_run(d, args.dataset) for d in dirs], refs, args.out, args.pool_runtimes)
            return 0
        scratch, generated = None, os.path.join(args.out, "configs")
        if args.config_runs:
            specs = sweep.plan_configs(args.config_runs, args.set)
        else:
            # a dry run writes nothing: configs a run would generate from recipes go to a scratch folder
            scratch = tempfile.mkdtemp(prefix="mdx_dry_run_") if args.dry_run else None
            specs = sweep.plan(args.dataset, args.methods, args.pairs, args.seeds, args.set, args.configs,
                               scratch or generated)
        if args.dry_run:
            try:
                return dry_run(specs, scratch, generated)
            finally:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
        aggregate.check_report_dir(args.out, args.replace_report)
        halted_file = os.path.join(args.out, HALTED_FILE)
        if not args.no_run and os.path.isfile(halted_file):
            with open(halted_file) as f:
                first = f.readline().strip()
            raise UserError(f"{halted_file}: {first}; look into it, then delete that file to go on")
        result = {"failed": [], "halted": [], "not_started": []}
        if not args.no_run:
            result = sweep.execute(specs, os.path.join(args.out, "logs"), jobs=args.jobs,
                                   halt=halt_check(args.halt, refs))
        report([aggregate.read_run(s.run_dir) for s in specs], refs, args.out, args.pool_runtimes)
        if result["failed"]:
            print(f"{len(result['failed'])} run(s) failed:", file=sys.stderr)
            for spec, rc, last, log in result["failed"]:
                print(f"  {spec.label}: exit {rc}: {last} (log: {log})", file=sys.stderr)
        if result["halted"]:  # execute stops at the first halt: one entry
            (spec, reason), = result["halted"]
            left = ", ".join(s.label for s in result["not_started"]) or "none"
            with open(halted_file, "w") as f:
                f.write(f"the sweep halted after {spec.label}: {reason}\nnot started: {left}\n")
            print(f"the sweep halted after {spec.label}: {reason}; not started: {left}. Look into it; "
                  f"{halted_file} keeps the sweep from starting until it is deleted", file=sys.stderr)
        return 1 if result["failed"] or result["halted"] else 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


"""Plan and run methods x pairs x seeds: skip finished runs, resume interrupted ones, never overwrite."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from mdistiller_ext import registry
from mdistiller_ext.errors import UserError
from mdistiller_ext.runs.provenance import PACKAGE_PARENT
from mdistiller_ext.runs.naming import experiment_name, load_config
from mdistiller_ext.generate import config_relpath, write_missing
from mdistiller_ext.recipes import PAIR_TABLES, pair_of

# where `import mdistiller_ext` resolves, for the runs' own processes (a source checkout or an install)


# signals that stop a run from outside without anything being wrong with it (a machine or session going down)
INTERRUPTIONS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


@dataclass
class RunSpec:
    dataset: str
    method: str
    pair: str
    seed: int
    config: str
    overrides: List[str]
    run_dir: str
    name: str = ""  # the config's TAG where the run comes from an explicit config

    @property
    def label(self) -> str:
        return f"{self.name or self.method} {self.pair} seed {self.seed}"


def config_path(dataset: str, method: str, pair: str, configs_root: str, generated_root: Optional[str] = None) -> str:
    """The config of (dataset, method, pair): configs_root's file, else one written from the method's
    recipe under ``generated_root`` (a method that ships no config file, e.g. a plug-in)."""
    path = os.path.join(configs_root, config_relpath(dataset, method, pair))
    if os.path.isfile(path):
        return path
    m = registry.by_slug(method)
    covered = m is not None and m.covers(dataset)
    if generated_root is not None and covered:
        return write_missing(dataset, method, pair, generated_root)
    recipe = f"; {m.name} has no {dataset} recipe" if m is not None and not covered else ""
    raise UserError(f"no config for {method} on {dataset} {pair} (looked for {path}{recipe}); run from the folder "
                    f"that holds configs/, or pass --configs DIR")


def plan(dataset: str, methods: Sequence[str], pairs: Sequence[str], seeds: Sequence[int],
         overrides: Sequence[str] = (), configs_root: str = "configs", generated_root: Optional[str] = None) -> List[RunSpec]:
    """Runs of methods x pairs x seeds from ``configs_root`` (the working directory's configs/ by default);
    a method without a config file there gets one from its recipe under ``generated_root``."""
    if dataset not in PAIR_TABLES:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(PAIR_TABLES)}")
    specs = []
    for pair in pairs:
        if pair not in PAIR_TABLES[dataset]:
            raise UserError(f"unknown {dataset} pair {pair!r}; choose from {', '.join(PAIR_TABLES[dataset])}")
        for method in methods:
            cfg_file = config_path(dataset, method, pair, configs_root, generated_root)
            for seed in seeds:
                opts = ["EXT.SEED", str(seed), *overrides]
                cfg = load_config(cfg_file, opts)
                specs.append(RunSpec(dataset, method, pair, seed, cfg_file, opts, planned_dir(cfg, opts)))
    return specs


def plan_configs(entries: Sequence[Dict], overrides: Sequence[str] = ()) -> List[RunSpec]:
    """Runs from explicit configs: each entry is {config: path, seeds: [..], set: {KEY: VALUE}}.

    Ordered seed by seed (every entry's first seed, then every entry's second, ...), so that an
    interrupted sweep has the same number of seeds for each config.
    """
    planned = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - {"config", "seeds", "set"}
        if unknown or "config" not in entry:
            raise UserError(f"sweep run #{i + 1}: needs 'config' (and optional 'seeds', 'set'); unknown keys {sorted(unknown)}")
        if not os.path.isfile(entry["config"]):
            raise UserError(f"sweep run #{i + 1}: config file not found: {entry['config']}")
        extra = [str(x) for kv in (entry.get("set") or {}).items() for x in kv]
        for rank, seed in enumerate(entry.get("seeds") or [0]):
            planned.append((rank, i, entry["config"], int(seed), extra))
    specs = []
    for _, _, cfg_file, seed, extra in sorted(planned, key=lambda t: (t[0], t[1])):
        opts = ["EXT.SEED", str(seed), *extra, *overrides]
        cfg = load_config(cfg_file, opts)
        ds = cfg.DATASET.TYPE
        specs.append(RunSpec(ds, cfg.DISTILLER.TYPE.lower(), pair_of(ds, cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT),
                             seed, cfg_file, opts, planned_dir(cfg, opts), cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG))
    return specs


def planned_dir(cfg, opts: Sequence[str]) -> str:
    """Where a planned run is: the directory its name gives, or else the one existing run that computes the
    same thing (its config equal but for keys that change no number), however it was named: a run made
    without typing the default EXT.SEED is that seed's run."""
    from mdistiller_ext.runs.directory import runs_of_config
    from mdistiller_ext.runs.pooling import NUMBER_NEUTRAL_KEYS

    named = os.path.join(cfg.LOG.PREFIX, experiment_name(cfg, list(opts)))
    if os.path.isdir(named):
        return named
    same = runs_of_config(cfg, NUMBER_NEUTRAL_KEYS)
    return os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, same[0]) if len(same) == 1 else named


def teacher_run(spec: RunSpec, planned: Sequence[RunSpec]) -> Optional[RunSpec]:
    """The planned run whose directory holds this run's EXT.TEACHER_CKPT (a study that trains its own
    teacher first), else None."""
    ckpt = load_config(spec.config, spec.overrides).EXT.TEACHER_CKPT
    if not ckpt:
        return None
    where = os.path.normpath(os.path.dirname(ckpt))
    return next((p for p in planned if p is not spec and os.path.normpath(p.run_dir) == where), None)


def missing_teacher(spec: RunSpec, planned: Sequence[RunSpec] = ()) -> str:
    """'' if the run's teacher can be found (or is made by another planned run), else why not."""
    from mdistiller_ext.builders import teacher_path

    cfg = load_config(spec.config, spec.overrides)
    method = registry.find(cfg.DISTILLER.TYPE)
    if method is not None and not method.needs_teacher:
        return ""
    try:
        teacher_path(cfg)
    except UserError as e:
        return "" if teacher_run(spec, planned) is not None else str(e)
    return ""


def status(spec: RunSpec) -> str:
    """finished (worklog ends with best_acc), partial (a checkpoint to resume), or missing."""
    from mdistiller_ext.runs import worklog

    log = os.path.join(spec.run_dir, "worklog.txt")
    if os.path.isfile(log) and worklog.read(log).finished:
        return "finished"
    from mdistiller_ext.runs.checkpoint import resumable

    if resumable(spec.run_dir):
        return "partial"
    return "missing"


def command(spec: RunSpec, state: str) -> List[str]:
    cmd = [sys.executable, "-m", "mdistiller_ext.cli.train", "--cfg", spec.config]
    if state == "partial":
        cmd.append("--resume")
    elif os.path.isfile(os.path.join(spec.run_dir, "worklog.txt")):
        # an unfinished run that never reached a checkpoint: nothing to keep
        cmd.append("--overwrite")
    return cmd + spec.overrides


def run_env(jobs: int) -> Dict[str, str]:
    """The runs' environment: this package on PYTHONPATH (the plug-ins travel in MDISTILLER_EXT_PLUGINS),
    and, for runs side by side, the cores shared out unless OMP_NUM_THREADS says otherwise."""
    path = os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def visible_gpus() -> List[str]:
    """The GPUs runs may use: CUDA_VISIBLE_DEVICES's list where it is set, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def execute(specs: Sequence[RunSpec], log_dir: str, echo: Callable[[str], None] = print, jobs: int = 1,
            gpus: Optional[Sequence[str]] = None,
            halt: Optional[Callable[[RunSpec, bool], Optional[str]]] = None) -> Dict[str, List]:
    """Run what is not finished, up to ``jobs`` at a time, in plan order; a run waits for the planned run
    that makes its teacher. A failing run is reported, not fatal (its students are reported as failed).
    With GPUs (``gpus``, default ``visible_gpus()``) and several jobs, each run sees one GPU
    (CUDA_VISIBLE_DEVICES), the one the fewest running runs use.

    ``halt(spec, ok)`` is asked about every run that ends in this call (``ok``: it finished without error);
    a reason it returns stops the sweep: no further run starts, the running ones finish, and the report's
    "halted" holds (spec, reason) and "not_started" the runs left. Runs finished before this call are not
    asked about, nor a run stopped by SIGTERM, SIGINT or SIGHUP (an interruption, e.g. a machine going down,
    that the next sweep resumes; it is reported failed)."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1; got {jobs}")
    gpus = list(visible_gpus() if gpus is None else gpus) if jobs > 1 else []
    os.makedirs(log_dir, exist_ok=True)
    report: Dict[str, List] = {"skipped": [], "ran": [], "failed": [], "halted": [], "not_started": []}
    env = run_env(jobs)
    n = len(specs)
    index = {id(spec): i for i, spec in enumerate(specs, 1)}
    waits_for = {id(spec): teacher_run(spec, specs) for spec in specs}
    done_dirs: Dict[str, bool] = {}  # run_dir -> finished without error in this call (or before it)
    pending = list(specs)
    running: List = []  # (process, spec, log_file, open file, GPU or None)

    def ended(spec: RunSpec, ok: bool) -> None:
        reason = halt(spec, ok) if halt is not None and not report["halted"] else None
        if reason:
            report["halted"].append((spec, reason))
            echo(f"    sweep halted after {spec.label}: {reason}")

    def fail(spec: RunSpec, rc: int, why: str, log_file: str, interrupted: bool = False) -> None:
        echo(f"    [{index[id(spec)]}/{n}] {spec.label} failed (exit {rc}): {why} [log: {log_file}]")
        report["failed"].append((spec, rc, why, log_file))
        done_dirs[os.path.normpath(spec.run_dir)] = False
        if not interrupted:
            ended(spec, False)

    def ready(spec: RunSpec) -> Optional[bool]:
        """True: can start; None: must wait; False: cannot run (its teacher run failed)."""
        busy = {os.path.normpath(r[1].run_dir) for r in running}
        if os.path.normpath(spec.run_dir) in busy:
            return None  # the same run listed twice: the second sees it finished
        teacher = waits_for[id(spec)]
        if teacher is None:
            return True
        return done_dirs.get(os.path.normpath(teacher.run_dir))

    while pending or running:
        if report["halted"]:
            report["not_started"] += pending
            pending = []
            if not running:
                break
        for spec in list(pending):
            if len(running) >= jobs or report["halted"]:
                break
            go = ready(spec)
            if go is None:
                continue
            pending.remove(spec)
            i = index[id(spec)]
            log_file = os.path.join(log_dir, f"{(spec.name or spec.method).replace(',', '_')}_{spec.pair}_seed{spec.seed}.log")
            if go is False:
                fail(spec, -1, f"its teacher run {waits_for[id(spec)].label} failed", log_file)
                continue
            state = status(spec)
            if state == "finished":
                echo(f"[{i}/{n}] {spec.label}: finished, skipped")
                report["skipped"].append(spec)
                done_dirs[os.path.normpath(spec.run_dir)] = True
                continue
            run_env_now = env
            where = ""
            if gpus:
                used = [r[4] for r in running]
                gpu = min(gpus, key=lambda g: (used.count(g), gpus.index(g)))
                run_env_now, where = dict(env, CUDA_VISIBLE_DEVICES=gpu), f" on GPU {gpu}"
            else:
                gpu = None
            echo(f"[{i}/{n}] {spec.label}: {'resuming' if state == 'partial' else 'running'}{where}")
            f = open(log_file, "w")
            running.append((subprocess.Popen(command(spec, state), stdout=f, stderr=subprocess.STDOUT, env=run_env_now),
                            spec, log_file, f, gpu))
            if jobs == 1:
                break
        if not running:
            if pending:  # only runs waiting on a teacher no run makes: cannot happen, but never spin
                raise RuntimeError(f"sweep scheduler stalled on {[s.label for s in pending]}")
            break
        time.sleep(0.2)
        for item in [r for r in running if r[0].poll() is not None]:
            proc, spec, log_file, f, _ = item
            running.remove(item)
            f.close()
            if proc.returncode == 0:
                report["ran"].append(spec)
                done_dirs[os.path.normpath(spec.run_dir)] = True
                if jobs > 1:
                    echo(f"    [{index[id(spec)]}/{n}] {spec.label}: done")
                ended(spec, True)
            else:
                with open(log_file) as lf:
                    tail = [line.strip() for line in lf if line.strip()][-1:] or ["(no output)"]
                fail(spec, proc.returncode, tail[0], log_file, -proc.returncode in INTERRUPTIONS)
    return report

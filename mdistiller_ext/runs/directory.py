"""The run directory's policy: which directory an invocation means (a fresh run, ``--resume`` found
from the config and overrides, ``--resume RUN_DIR``), when a fresh run may start there, and creating it
only once the run is about to train (a run that fails before its first step leaves nothing behind)."""
import argparse
import os
import sys
from typing import List, Sequence, Tuple

from yacs.config import CfgNode

from mdistiller_ext.errors import UserError
from mdistiller_ext.runs.checkpoint import LATEST, SNAPSHOT, discard, resumable
from mdistiller_ext.runs.naming import experiment_name, load_config
from mdistiller_ext.runs.pooling import RESUME_NEUTRAL_KEYS

def check_run_dir(log_path: str, overwrite: bool) -> None:
    """A fresh run: refuse to mix with an existing run unless --overwrite; check the folder can be written
    (without creating it yet, so that a run failing before its first step leaves nothing behind)."""
    from mdistiller_ext.runs import worklog

    log = os.path.join(log_path, "worklog.txt")
    if os.path.exists(log) and not overwrite:
        state = "a finished" if worklog.read(log).finished else "an unfinished"
        raise UserError(f"{log_path} already holds {state} run; pass --resume to continue it, --overwrite to start "
                        "again, or set EXPERIMENT.TAG for a new run")
    existing = os.path.abspath(log_path)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise UserError(f"cannot create the run directory {log_path}: {existing} is a file; set LOG.PREFIX to a folder")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the run directory {log_path} ({existing} is not writable); "
                        "set LOG.PREFIX to a writable folder")


def start_run_dir(log_path: str, cfg: CfgNode) -> None:
    from mdistiller_ext.config import write_config

    os.makedirs(log_path, exist_ok=True)
    log = os.path.join(log_path, "worklog.txt")
    if os.path.exists(log):  # --overwrite
        os.remove(log)
    # what --resume would continue from is the old run's: a crash of this one in its first epoch must not lead there
    discard(log_path, LATEST, SNAPSHOT)
    write_config(log_path, cfg)


def resolve_run(args: argparse.Namespace) -> Tuple[CfgNode, str]:
    """(config, run name) of this invocation. ``--resume RUN_DIR`` takes the run's own config.yaml (or
    --cfg) plus the overrides; ``--resume`` alone finds the run from --cfg and the overrides, and, where
    an override such as SOLVER.EPOCHS only extends the run, from the overrides that named it."""
    if args.run_dir:
        run_dir = os.path.normpath(args.run_dir)
        saved = os.path.join(run_dir, "config.yaml")
        if not os.path.isdir(run_dir):
            raise UserError(f"--resume {args.run_dir}: no such run directory; give the folder of a run (it holds worklog.txt "
                            "and latest), or --cfg with the run's overrides")
        if not resumable(run_dir):
            raise UserError(f"--resume {args.run_dir}: no checkpoint {os.path.join(run_dir, 'latest')}; "
                            "give a run directory that finished at least one epoch")
        cfg = load_config(args.cfg or saved, args.opts)
        return cfg, os.path.abspath(run_dir)  # joined to LOG.PREFIX, an absolute name stays itself
    cfg = load_config(args.cfg, args.opts)
    name = experiment_name(cfg, args.opts)
    if not args.resume or os.path.isdir(os.path.join(cfg.LOG.PREFIX, name)):
        return cfg, name
    # the run may have been named with other values of keys that only extend it (SOLVER.EPOCHS, paths, ...),
    # and a long name is cut wherever its bytes run out: the run is found by what it computes
    matches = runs_of_config(cfg, RESUME_NEUTRAL_KEYS, with_checkpoint=True)
    if len(matches) == 1:
        print(f"note: resuming {matches[0]}: the run keeps its directory name, whose overrides name how it started "
              f"(its config.yaml and runtime.json record the rest)", file=sys.stderr)
        return cfg, os.path.join(cfg.EXPERIMENT.PROJECT, matches[0])
    found = f"; candidates (the same config): {', '.join(matches)}" if matches else ""
    raise UserError(f"--resume: no run directory {os.path.join(cfg.LOG.PREFIX, name)}{found}; start without --resume, "
                    "or name the run: --resume RUN_DIR")


def runs_of_config(cfg: CfgNode, neutral: Sequence[str], with_checkpoint: bool = False) -> List[str]:
    """The run directories under cfg's LOG.PREFIX/EXPERIMENT.PROJECT and tag whose saved config.yaml equals
    ``cfg`` but for the ``neutral`` keys: a run recognised by what it computes, however it was named (with
    or without the default EXT.SEED typed, with a name cut short). ``with_checkpoint``: only those that can
    be resumed."""
    from mdistiller_ext.runs.naming import MAX_NAME_BYTES
    from mdistiller_ext.runs.pooling import config_differences

    tag = (cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG).encode()[:MAX_NAME_BYTES - 16].decode(errors="ignore")
    project = os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT)
    found = []
    for d in sorted(os.listdir(project)) if os.path.isdir(project) else []:
        saved = os.path.join(project, d, "config.yaml")
        under_tag = d == tag or d.startswith(tag + ",") or ("...#" in d and d.startswith(tag))
        if not under_tag or not os.path.isfile(saved):
            continue
        if with_checkpoint and not resumable(os.path.join(project, d)):
            continue
        with open(saved) as f:
            if not config_differences(CfgNode.load_cfg(f.read()), cfg, neutral):
                found.append(d)
    return found

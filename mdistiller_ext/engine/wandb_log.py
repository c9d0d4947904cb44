"""LOG.WANDB: Weights & Biases logging as the host does it, with wandb an optional dependency.

The run is named and tagged as mdistiller's tools/train.py names it: project EXPERIMENT.PROJECT,
name PROJECT/<run name>, tags the TAG's comma-separated parts plus KEY:VALUE for each override;
per epoch the host logs {"current lr": lr} and the epoch's values, and keeps best_acc in the
run summary. Without wandb (or when it cannot start) one line says so and training goes on.
"""
import sys
from typing import Dict, List

from yacs.config import CfgNode


def tags_of(cfg: CfgNode, name: str) -> List[str]:
    """TAG's parts, then the ',KEY:VALUE' parts that the run name carries for the overrides."""
    base = cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG
    run = name.split("/", 1)[-1]
    extra = run[len(base):].lstrip(",") if run.startswith(base) else ""
    return cfg.EXPERIMENT.TAG.split(",") + ([t for t in extra.split(",") if t] if extra else [])


def start_wandb(cfg: CfgNode, name: str) -> bool:
    """wandb.init as the host's script calls it; False (and one line on stderr) where it cannot start."""
    try:
        import wandb
    except ImportError:
        print("LOG.WANDB is True but wandb is not installed (pip install wandb); training goes on without it",
              file=sys.stderr)
        return False
    try:
        wandb.init(project=cfg.EXPERIMENT.PROJECT, name=name, tags=tags_of(cfg, name))
    except Exception as e:  # no login, no network in online mode, ...: the host also trains on
        print(f"LOG.WANDB: wandb could not start ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); "
              "training goes on without it", file=sys.stderr)
        return False
    return True


def log_epoch(lr: float, values: Dict[str, float], best_acc: float) -> None:
    import wandb

    wandb.log({"current lr": lr})
    wandb.log(dict(values))
    wandb.run.summary["best_acc"] = best_acc


def finish() -> None:
    import wandb

    wandb.finish()

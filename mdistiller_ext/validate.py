"""Config validation before any work: each failure names the key, the value and what is allowed."""
import re
from typing import Any, List

from yacs.config import CfgNode

from mdistiller_ext import registry
from mdistiller_ext.config import AMP_MODES, ENGINES, EXPORT_EPOCHS, NONFINITE_MODES, SWITCHES
from mdistiller_ext.errors import UserError
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Rule, in_unit_interval, integer_at_least, one_of

DATASETS = ("cifar100", "cifar10", "imagenet", "tiny_imagenet")


def _increasing(v: Any) -> bool:
    stages = list(v)
    return all(isinstance(s, int) and s > 0 for s in stages) and all(a < b for a, b in zip(stages, stages[1:]))


# the host's keys and EXT; each method's own rules are in its module (registry.rules())
RULES: List[Rule] = [
    ("SOLVER.EPOCHS", POSITIVE_INT),
    ("SOLVER.BATCH_SIZE", POSITIVE_INT),
    ("DATASET.TEST.BATCH_SIZE", POSITIVE_INT),
    ("DATASET.NUM_WORKERS", integer_at_least(0)),
    ("DATASET.TYPE", one_of(DATASETS)),
    ("SOLVER.LR", POSITIVE),
    ("SOLVER.WEIGHT_DECAY", NON_NEGATIVE),
    ("SOLVER.MOMENTUM", in_unit_interval()),
    ("SOLVER.LR_DECAY_STAGES", (_increasing, "strictly increasing positive epochs")),
    ("SOLVER.LR_DECAY_RATE", in_unit_interval(closed_right=True)),
    ("SOLVER.TYPE", one_of(("SGD",))),
    ("LOG.SAVE_CHECKPOINT_FREQ", POSITIVE_INT),
    ("EXT.ENGINE", one_of(ENGINES)),
    ("EXT.DEVICE", (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N")),
    ("EXT.SEED", integer_at_least(0)),
    ("EXT.NONFINITE", one_of(NONFINITE_MODES)),
    ("EXT.SNAPSHOT_MINUTES", NON_NEGATIVE),
    ("EXT.FAST_DATA", one_of(SWITCHES)),
    ("EXT.AMP", one_of(AMP_MODES)),
    ("EXT.CHANNELS_LAST", one_of(SWITCHES)),
    ("EXT.TRAIN_SUBSET", integer_at_least(0, "0: all images")),
    ("EXT.VAL_SPLIT", integer_at_least(0, "0: no validation split")),
    ("EXT.TEACHER_CACHE", one_of(SWITCHES)),
    ("EXT.EXPORT_TEACHER_EPOCH", one_of(EXPORT_EPOCHS)),
    ("EXT.THREADS", integer_at_least(0, "0: torch's default")),
    ("EXT.GRAD_PROBE_EVERY", integer_at_least(0, "0: off")),
]


def _get(cfg: CfgNode, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def validate_values(cfg: CfgNode) -> None:
    """Raise UserError on the first value outside what its key allows (before anything reads it)."""
    for key, (ok, allowed) in RULES + registry.rules():
        value = _get(cfg, key)
        if not ok(value):
            raise UserError(f"config {key} = {value!r} is invalid: expected {allowed}")


def validate(cfg: CfgNode, standalone_engine: bool) -> None:
    """Raise UserError on the first invalid value, or the first rule the chosen engine cannot follow."""
    validate_values(cfg)
    # "crd" is CRD's recipe trainer (mdistiller's on its route): this engine runs CRD with its base trainer
    if standalone_engine and cfg.SOLVER.TRAINER not in ("base", "align") + (("crd",) if cfg.DISTILLER.TYPE == "CRD" else ()):
        raise UserError(f"config SOLVER.TRAINER = {cfg.SOLVER.TRAINER!r} needs mdistiller's trainers on CUDA; "
                        "this engine runs base or align")
    if cfg.EXT.VAL_SPLIT and not standalone_engine:
        raise UserError("config EXT.VAL_SPLIT needs this project's engine (EXT.ENGINE ext); mdistiller's trainers "
                        "do not evaluate a validation split")
    if cfg.EXT.GRAD_PROBE_EVERY > 0 and not standalone_engine:
        raise UserError("config EXT.GRAD_PROBE_EVERY needs this project's engine (EXT.ENGINE ext); "
                        "mdistiller's trainers do not run the probe")
    method = registry.find(cfg.DISTILLER.TYPE)
    if method is not None and method.check_config is not None:
        method.check_config(cfg, standalone_engine)
    if cfg.SOLVER.TRAINER == "align" and method is not None and not method.needs_teacher:
        raise UserError(f"config SOLVER.TRAINER = 'align' needs a distiller with a task and a distillation loss; "
                        f"DISTILLER.TYPE {cfg.DISTILLER.TYPE} has no teacher")

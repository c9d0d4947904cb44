"""Config validation before any work: each failure names the key, the value and what is allowed."""
import re
from typing import Any, Callable, List, Tuple

from yacs.config import CfgNode

from . import host
from .errors import UserError
from .heads import HEAD_INITS, HEAD_TYPES
from .losses import LOGIT_LOSSES, RATIO_MODES, RATIO_NORMS

SERIAL_MODES = ("none", "cls_then_kd", "kd_then_cls")
DATASETS = ("cifar100", "cifar10", "imagenet", "tiny_imagenet")


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _non_negative(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _one_of(*choices: str) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


def _increasing(v: Any) -> bool:
    stages = list(v)
    return all(isinstance(s, int) and s > 0 for s in stages) and all(a < b for a, b in zip(stages, stages[1:]))


POSITIVE = (_positive, "a number > 0")
NON_NEGATIVE = (_non_negative, "a number >= 0")
POSITIVE_INT = (_positive_int, "an integer > 0")

RULES: List[Tuple[str, Tuple[Callable[[Any], bool], str]]] = [
    ("SOLVER.EPOCHS", POSITIVE_INT),
    ("SOLVER.BATCH_SIZE", POSITIVE_INT),
    ("DATASET.TEST.BATCH_SIZE", POSITIVE_INT),
    ("DATASET.NUM_WORKERS", (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")),
    ("DATASET.TYPE", _one_of(*DATASETS)),
    ("SOLVER.LR", POSITIVE),
    ("SOLVER.WEIGHT_DECAY", NON_NEGATIVE),
    ("SOLVER.MOMENTUM", (lambda v: _non_negative(v) and v < 1, "a number in [0, 1)")),
    ("SOLVER.LR_DECAY_STAGES", (_increasing, "strictly increasing positive epochs")),
    ("SOLVER.LR_DECAY_RATE", (lambda v: _positive(v) and v <= 1, "a number in (0, 1]")),
    ("SOLVER.TYPE", _one_of("SGD")),
    ("LOG.SAVE_CHECKPOINT_FREQ", POSITIVE_INT),
    ("KD.TEMPERATURE", POSITIVE),
    ("KD.LOSS.CE_WEIGHT", NON_NEGATIVE),
    ("KD.LOSS.KD_WEIGHT", NON_NEGATIVE),
    ("DKD.T", POSITIVE),
    ("DKD.ALPHA", NON_NEGATIVE),
    ("DKD.BETA", NON_NEGATIVE),
    ("DKD.CE_WEIGHT", NON_NEGATIVE),
    ("DKD.WARMUP", NON_NEGATIVE),
    ("DHKD.T", POSITIVE),
    ("DHKD.ALPHA", NON_NEGATIVE),
    ("DHKD.CE_WEIGHT", NON_NEGATIVE),
    ("DHKD.LOSS", _one_of(*LOGIT_LOSSES)),
    ("DHKD.HEAD", _one_of(*HEAD_TYPES)),
    ("DHKD.HIDDEN", POSITIVE_INT),
    ("DHKD.HEAD_INIT", _one_of(*HEAD_INITS)),
    ("DHKD.DROPOUT", (lambda v: _non_negative(v) and v < 1, "a number in [0, 1)")),
    ("DHKD.KD_OFF_EPOCH", (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: never)")),
    ("DHKD.MAIN_KD_WEIGHT", NON_NEGATIVE),
    ("DHKD.MAIN_KD_T", POSITIVE),
    ("AEKT.T", POSITIVE),
    ("AEKT.ALPHA", NON_NEGATIVE),
    ("AEKT.BETA", NON_NEGATIVE),
    ("AEKT.CE_WEIGHT", NON_NEGATIVE),
    ("AEKT.WARMUP", NON_NEGATIVE),
    ("AEKT.RATIO_MODE", _one_of(*RATIO_MODES)),
    ("AEKT.W_MAX", POSITIVE),
    ("AEKT.RATIO_NORM", _one_of(*RATIO_NORMS)),
    ("AEKT.RATIO_T", (_non_negative, "a number >= 0 (0: use AEKT.T)")),
    ("AEKT.SERIAL", _one_of(*SERIAL_MODES)),
    ("AEKT.SERIAL_DECAY", _one_of("identity", "zero")),
    ("EXT.ENGINE", _one_of("auto", "host", "ext")),
    ("EXT.DEVICE", (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N")),
    ("EXT.SEED", (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")),
    ("EXT.NONFINITE", _one_of("stop", "skip")),
    ("EXT.FAST_DATA", _one_of("auto", "on", "off")),
    ("EXT.AMP", _one_of("auto", "off", "bf16", "fp16")),
    ("EXT.CHANNELS_LAST", _one_of("auto", "on", "off")),
    ("EXT.TRAIN_SUBSET", (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: all images)")),
    ("EXT.EXPORT_TEACHER_EPOCH", _one_of("best", "last")),
    ("EXT.THREADS", (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: torch's default)")),
    ("EXT.GRAD_PROBE_EVERY", (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: off)")),
]


def _get(cfg: CfgNode, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def validate(cfg: CfgNode, standalone_engine: bool) -> None:
    """Raise UserError on the first invalid value."""
    for key, (ok, allowed) in RULES:
        value = _get(cfg, key)
        if not ok(value):
            raise UserError(f"config {key} = {value!r} is invalid: expected {allowed}")
    if standalone_engine and cfg.SOLVER.TRAINER not in ("base", "align"):
        raise UserError(f"config SOLVER.TRAINER = {cfg.SOLVER.TRAINER!r} needs mdistiller's trainers on CUDA; "
                        "this engine runs base or align")
    if cfg.DISTILLER.TYPE == "CRD" and standalone_engine and host.HAS_MDISTILLER:
        raise UserError("DISTILLER.TYPE CRD runs only through mdistiller's own trainer on a CUDA device (its contrastive "
                        "sampler and memory bank are mdistiller's, built on the GPU); run it where CUDA is available")
    if cfg.EXT.GRAD_PROBE_EVERY > 0 and not standalone_engine:
        raise UserError("config EXT.GRAD_PROBE_EVERY needs this project's engine (EXT.ENGINE ext); "
                        "mdistiller's trainers do not run the probe")
    if cfg.SOLVER.TRAINER == "align" and cfg.DISTILLER.TYPE == "NONE":
        raise UserError("config SOLVER.TRAINER = 'align' needs a distiller with loss_ce and loss_kd; DISTILLER.TYPE is NONE")

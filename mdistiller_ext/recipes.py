"""The standard teacher/student pairs and the part of every config that is not a method's: the
solver and the run's identity. Each method's own settings are its recipe, in its module.

Facts from the host (pair names, solver) and from the DHKD spec (which pairs are
cross-architecture: DHKD uses the nonlinear head and gradient alignment there).
"""
from typing import Dict, NamedTuple


class Pair(NamedTuple):
    teacher: str
    student: str
    lr: float            # 0.01 for MobileNetV2 / ShuffleNet students, else 0.05
    heterogeneous: bool  # cross-architecture
    published: bool = True  # one of the papers' (and mdistiller's) table pairs; False: a CPU-sized pair of ours


CIFAR100_PAIRS: Dict[str, Pair] = {
    "res56_res20": Pair("resnet56", "resnet20", 0.05, False),
    "res110_res32": Pair("resnet110", "resnet32", 0.05, False),
    "res32x4_res8x4": Pair("resnet32x4", "resnet8x4", 0.05, False),
    "wrn40_2_wrn_16_2": Pair("wrn_40_2", "wrn_16_2", 0.05, False),
    "wrn40_2_wrn_40_1": Pair("wrn_40_2", "wrn_40_1", 0.05, False),
    "vgg13_vgg8": Pair("vgg13", "vgg8", 0.05, False),
    "vgg13_mv2": Pair("vgg13", "MobileNetV2", 0.01, True),
    "res50_mv2": Pair("ResNet50", "MobileNetV2", 0.01, True),
    "res32x4_shuv1": Pair("resnet32x4", "ShuffleV1", 0.01, True),
    "res32x4_shuv2": Pair("resnet32x4", "ShuffleV2", 0.01, True),
    "wrn40_2_shuv1": Pair("wrn_40_2", "ShuffleV1", 0.01, True),
    # not in the papers' tables: the CIFAR-100 study's CPU-sized pair (the CIFAR-10 study's, on CIFAR-100)
    "res20_res8": Pair("resnet20", "resnet8", 0.05, False, published=False),
}

# CIFAR-10 (JPEG copy) pairs that run standalone; res20_res8 is small enough for a CPU.
CIFAR10_PAIRS: Dict[str, Pair] = {
    "res56_res20": Pair("resnet56", "resnet20", 0.05, False),
    "res32x4_res8x4": Pair("resnet32x4", "resnet8x4", 0.05, False),
    "res20_res8": Pair("resnet20", "resnet8", 0.05, False),
}

IMAGENET_PAIRS: Dict[str, Pair] = {
    "r34_r18": Pair("ResNet34", "ResNet18", 0.2, False),
    "r50_mv1": Pair("ResNet50", "MobileNetV1", 0.2, True),
}

CIFAR_SOLVER = {"BATCH_SIZE": 64, "EPOCHS": 240, "LR_DECAY_STAGES": [150, 180, 210], "LR_DECAY_RATE": 0.1,
                "WEIGHT_DECAY": 0.0005, "MOMENTUM": 0.9, "TYPE": "SGD"}
# mdistiller's ImageNet solver (batch 512, lr 0.2); the DHKD authors used batch 128, lr 0.1
IMAGENET_SOLVER = {"BATCH_SIZE": 512, "EPOCHS": 100, "LR": 0.2, "LR_DECAY_STAGES": [30, 60, 90],
                   "LR_DECAY_RATE": 0.1, "WEIGHT_DECAY": 0.0001, "MOMENTUM": 0.9, "TYPE": "SGD"}

# mdistiller trains its ImageNet CRD and ReviewKD baselines with batch 256, lr 0.1
IMAGENET_FEATURE_SOLVER = {"BATCH_SIZE": 256, "LR": 0.1}

PAIR_TABLES: Dict[str, Dict[str, Pair]] = {"cifar100": CIFAR100_PAIRS, "cifar10": CIFAR10_PAIRS,
                                           "imagenet": IMAGENET_PAIRS}
Config = Dict[str, dict]


def pair_of(dataset: str, teacher: str, student: str) -> str:
    """The pair's name in the tables, or "teacher->student" for a pair outside them."""
    for name, p in PAIR_TABLES.get(dataset, {}).items():
        if (p.teacher, p.student) == (teacher, student):
            return name
    return f"{teacher}->{student}"


def base_config(dataset: str, project: str, tag: str, kind: str, teacher: str, student: str, lr: float) -> Config:
    """Every generated config's common part: the run's identity and the dataset's solver."""
    solver = dict(IMAGENET_SOLVER if dataset == "imagenet" else CIFAR_SOLVER)
    if dataset != "imagenet":
        solver["LR"] = lr
    solver["TRAINER"] = "base"
    cfg: Config = {
        "EXPERIMENT": {"NAME": "", "TAG": tag, "PROJECT": project},
        "DATASET": {"TYPE": dataset},
        "DISTILLER": {"TYPE": kind, "TEACHER": teacher, "STUDENT": student},
        "SOLVER": solver,
        "LOG": {"WANDB": False},
    }
    if dataset == "imagenet":
        cfg["DATASET"].update({"NUM_WORKERS": 32, "TEST": {"BATCH_SIZE": 128}})
        cfg["LOG"]["SAVE_CHECKPOINT_FREQ"] = 10
    return cfg


def merge_sections(cfg: Config, patch: Config) -> Config:
    """``cfg`` with ``patch``'s sections merged in, key by key, at every depth."""
    out = dict(cfg)
    for key, value in patch.items():
        out[key] = merge_sections(out.get(key, {}), value) if isinstance(value, dict) else value
    return out

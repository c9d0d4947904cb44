"""The standard teacher/student pairs and their recipes: the one table configs are generated from.

Facts from the host (pair names, solver, DKD's per-pair beta) and from the DHKD spec (head
type per pair: linear for same-family pairs, nonlinear + gradient alignment across families).
"""
from typing import Dict, NamedTuple


class Pair(NamedTuple):
    teacher: str
    student: str
    beta: float          # DKD's per-pair beta (also AEKT's)
    lr: float            # 0.01 for MobileNetV2 / ShuffleNet students, else 0.05
    heterogeneous: bool  # cross-architecture: DHKD uses the nonlinear head and gradient alignment


CIFAR100_PAIRS: Dict[str, Pair] = {
    "res56_res20": Pair("resnet56", "resnet20", 2.0, 0.05, False),
    "res110_res32": Pair("resnet110", "resnet32", 2.0, 0.05, False),
    "res32x4_res8x4": Pair("resnet32x4", "resnet8x4", 8.0, 0.05, False),
    "wrn40_2_wrn_16_2": Pair("wrn_40_2", "wrn_16_2", 6.0, 0.05, False),
    "wrn40_2_wrn_40_1": Pair("wrn_40_2", "wrn_40_1", 6.0, 0.05, False),
    "vgg13_vgg8": Pair("vgg13", "vgg8", 6.0, 0.05, False),
    "vgg13_mv2": Pair("vgg13", "MobileNetV2", 6.0, 0.01, True),
    "res50_mv2": Pair("ResNet50", "MobileNetV2", 8.0, 0.01, True),
    "res32x4_shuv1": Pair("resnet32x4", "ShuffleV1", 8.0, 0.01, True),
    "res32x4_shuv2": Pair("resnet32x4", "ShuffleV2", 8.0, 0.01, True),
    "wrn40_2_shuv1": Pair("wrn_40_2", "ShuffleV1", 8.0, 0.01, True),
}

# CIFAR-10 (JPEG copy) pairs that run standalone; res20_res8 is small enough for a CPU.
# beta: the CIFAR-100 value of the same teacher family (a choice, not a published setting).
CIFAR10_PAIRS: Dict[str, Pair] = {
    "res56_res20": Pair("resnet56", "resnet20", 2.0, 0.05, False),
    "res32x4_res8x4": Pair("resnet32x4", "resnet8x4", 8.0, 0.05, False),
    "res20_res8": Pair("resnet20", "resnet8", 2.0, 0.05, False),
}

IMAGENET_PAIRS: Dict[str, Pair] = {
    "r34_r18": Pair("ResNet34", "ResNet18", 0.5, 0.2, False),
    "r50_mv1": Pair("ResNet50", "MobileNetV1", 2.0, 0.2, True),
}

CIFAR_SOLVER = {"BATCH_SIZE": 64, "EPOCHS": 240, "LR_DECAY_STAGES": [150, 180, 210], "LR_DECAY_RATE": 0.1,
                "WEIGHT_DECAY": 0.0005, "MOMENTUM": 0.9, "TYPE": "SGD"}
# mdistiller's ImageNet solver (batch 512, lr 0.2); the DHKD authors used batch 128, lr 0.1
IMAGENET_SOLVER = {"BATCH_SIZE": 512, "EPOCHS": 100, "LR": 0.2, "LR_DECAY_STAGES": [30, 60, 90],
                   "LR_DECAY_RATE": 0.1, "WEIGHT_DECAY": 0.0001, "MOMENTUM": 0.9, "TYPE": "SGD"}

# mdistiller's ReviewKD settings that are not shape-derived: (REVIEWKD_WEIGHT, MAX_MID_CHANNEL)
REVIEWKD_CIFAR_WEIGHT = 5.0
IMAGENET_REVIEWKD = {"r34_r18": (1.0, 512), "r50_mv1": (8.0, 256)}
# mdistiller trains its ImageNet CRD and ReviewKD baselines with batch 256, lr 0.1
IMAGENET_FEATURE_SOLVER = {"BATCH_SIZE": 256, "LR": 0.1}

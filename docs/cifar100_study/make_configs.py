"""The CIFAR-100 study's configs: each shipped CIFAR-100 res20_res8 config with the study's changes, all of
them listed here and in the study's README (a test keeps the files equal to what this writes).

python docs/cifar100_study/make_configs.py
"""
import os
import sys
from typing import Dict, Tuple

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STUDY = os.path.relpath(HERE, ROOT)  # docs/cifar100_study: runs land in its runs/ folder

# the CIFAR-10 study's schedule: 15 epochs in the 240-epoch recipe's proportions
SCHEDULE = {"SOLVER": {"EPOCHS": 15, "LR_DECAY_STAGES": [9, 11, 13]}}
COMMON = {"EXT": {"DATA_ROOT": "../shared/data", "CHANNELS_LAST": "on"}, "LOG": {"PREFIX": STUDY}}
TEACHER = "../shared/teachers/cifar100/resnet20.pth"  # 68.83% (the zoo's resnet20, not mdistiller's own)
STUDENT = {"EXT": {"GRAD_PROBE_EVERY": 100, "TEACHER_CKPT": TEACHER}}
# DKD's and AEKT's 20 of 240 epochs, scaled to 15 and ramped per step (this project's classes)
WARMUP_PER_STEP = 1.25
# mdistiller's ReviewKD ramps per epoch only (min(epoch / WARMUP_EPOCHS, 1)): 2 is the per-epoch ramp
# closest to the per-step 1.25 (half weight in epoch 1, full from epoch 2)
REVIEWKD_WARMUP = 2

# study config -> (shipped config under configs/cifar100/, tag, the study's own changes)
CONFIGS: Dict[str, Tuple[str, str, dict]] = {
    "vanilla_resnet8": ("vanilla/resnet20", "vanilla,resnet8",
                        {"DISTILLER": {"STUDENT": "resnet8"},
                         "EXT": {"EXPORT_TEACHER": False, "GRAD_PROBE_EVERY": 100}}),
    "kd": ("kd/res20_res8", "kd,resnet20,resnet8", STUDENT),
    "dkd": ("dkd/res20_res8", "dkd,resnet20,resnet8", {**STUDENT, "DKD": {"WARMUP": WARMUP_PER_STEP}}),
    "dhkd": ("dhkd/res20_res8", "dhkd,resnet20,resnet8", STUDENT),
    "aekt": ("aekt/res20_res8", "aekt,resnet20,resnet8", {**STUDENT, "AEKT": {"WARMUP": WARMUP_PER_STEP}}),
    "dhkd_one_head_bkl": ("dhkd/res20_res8", "dhkd_one_head_bkl,resnet20,resnet8",
                          {**STUDENT, "DHKD": {"HEAD": "none", "LOSS": "bkl"}}),
    "dhkd_one_head_bkl_norm": ("dhkd/res20_res8", "dhkd_one_head_bkl_norm,resnet20,resnet8",
                               {**STUDENT, "DHKD": {"HEAD": "none", "LOSS": "bkl_norm"}}),
    "dhkd_align": ("dhkd/res20_res8", "dhkd_align,resnet20,resnet8", {**STUDENT, "SOLVER": {"TRAINER": "align"}}),
    "reviewkd": ("reviewkd/res20_res8", "reviewkd,resnet20,resnet8",
                 {**STUDENT, "REVIEWKD": {"WARMUP_EPOCHS": REVIEWKD_WARMUP}}),
    # the baselines' single-seed rows (sweep_baselines.yaml), after the study's own runs
    "crd": ("crd/res20_res8", "crd,resnet20,resnet8", STUDENT),
    "kd_logit_stand": ("kd/res20_res8", "kd_logit_stand,resnet20,resnet8",
                       {**STUDENT, "KD": {"LOGIT_STAND": True, "TEMPERATURE": 2, "LOSS": {"KD_WEIGHT": 9.0}}}),
    "dist": ("dist/res20_res8", "dist,resnet20,resnet8", STUDENT),
    "ttm": ("ttm/res20_res8", "ttm,resnet20,resnet8", STUDENT),
}

HEADER = ("# CIFAR-100 study (docs/cifar100_study/README.md): configs/cifar100/{shipped}.yaml with the study's changes,\n"
          "# written by docs/cifar100_study/make_configs.py (the changes are listed there and in the README).\n")


def merged(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        out[k] = merged(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def study_config(name: str) -> dict:
    shipped, tag, changes = CONFIGS[name]
    with open(os.path.join(ROOT, "configs", "cifar100", f"{shipped}.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg = merged(merged(merged(cfg, SCHEDULE), COMMON), changes)
    cfg["EXPERIMENT"].update({"PROJECT": "runs", "TAG": tag})
    return cfg


def render(name: str) -> str:
    return HEADER.format(shipped=CONFIGS[name][0]) + yaml.safe_dump(study_config(name), sort_keys=False)


def main() -> int:
    folder = os.path.join(HERE, "configs")
    os.makedirs(folder, exist_ok=True)
    for name in CONFIGS:
        with open(os.path.join(folder, f"{name}.yaml"), "w") as f:
            f.write(render(name))
    print(f"{len(CONFIGS)} configs in {os.path.relpath(folder, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

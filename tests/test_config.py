"""Config defaults, every shipped yaml, the generator and every validation rule."""
import os
import subprocess
import sys

import pytest
import yaml

from mdistiller_ext import registry
from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.errors import UserError
from mdistiller_ext.host.standalone.cfg import host_defaults
from mdistiller_ext.validate import RULES, validate

from .conftest import ROOT, shared_file

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def to_plain(node):
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    return node


def test_standalone_defaults_equal_host_facts():
    facts = yaml.safe_load(shared_file("mdistiller/cfg_defaults.yaml").read_text().replace("*id001", "[32, 32]").replace("&id001", ""))
    assert to_plain(host_defaults()) == to_plain(facts)


def test_base_cfg_has_new_nodes_and_is_a_fresh_copy():
    a, b = registration.base_cfg(), registration.base_cfg()
    for node in ("DHKD", "AEKT", "EXT"):
        assert node in a
    a.DHKD.T = 9.0
    assert b.DHKD.T == 2.0


def test_shipped_configs_are_exactly_the_generated_ones():
    # every registered recipe on every pair of its datasets, the teachers, the ablations: no stray file
    from mdistiller_ext.generate import all_configs

    generated = {os.path.normpath(rel) for rel, _ in all_configs()}
    assert {str(p.relative_to(ROOT / "configs")) for p in CONFIGS} == generated
    per_method = {m.slug: sum(1 for rel in generated if "ablations" not in rel
                              and (f"/{m.slug}/" in f"/{rel}" or rel.endswith(f"/{m.slug}.yaml")))
                  for m in registry.methods(builtin_only=True) if m.recipe is not None}
    # 15 CIFAR pairs (11 published CIFAR-100 + res20_res8 + 3 CIFAR-10) + 2 ImageNet pairs, every method
    assert per_method == {"kd": 17, "dkd": 17, "crd": 17, "reviewkd": 17, "dhkd": 17, "aekt": 17, "dist": 17, "ttm": 17,
                          "wttm": 17}


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_every_config_merges_and_validates(path):
    cfg = registration.base_cfg()
    cfg.merge_from_file(str(path))
    validate(cfg, standalone_engine=cfg.SOLVER.TRAINER in ("base", "align"))
    table = host.imagenet_model_dict if cfg.DATASET.TYPE == "imagenet" else host.cifar_model_dict
    assert cfg.DISTILLER.STUDENT in table and cfg.DISTILLER.TEACHER in table


def test_dhkd_recipe_per_pair():
    cfg = registration.base_cfg()
    cfg.merge_from_file(str(ROOT / "configs/cifar100/dhkd/res32x4_shuv2.yaml"))
    assert (cfg.DHKD.HEAD, cfg.SOLVER.TRAINER, cfg.SOLVER.LR) == ("nonlinear", "align", 0.01)
    cfg = registration.base_cfg()
    cfg.merge_from_file(str(ROOT / "configs/cifar100/dhkd/res56_res20.yaml"))
    assert (cfg.DHKD.HEAD, cfg.SOLVER.TRAINER, cfg.SOLVER.LR, cfg.SOLVER.WEIGHT_DECAY) == ("linear", "base", 0.05, 0.0005)
    cfg = registration.base_cfg()
    cfg.merge_from_file(str(ROOT / "configs/imagenet/r34_r18/dhkd.yaml"))
    assert (cfg.DHKD.ALPHA, cfg.DHKD.KD_OFF_EPOCH, cfg.DHKD.HEAD) == (0.1, 50, "linear")


def test_aekt_betas_per_pair():
    expected = {"res56_res20": 2, "res110_res32": 2, "res32x4_res8x4": 8, "wrn40_2_wrn_16_2": 6, "wrn40_2_wrn_40_1": 6,
                "vgg13_vgg8": 6, "vgg13_mv2": 6, "res50_mv2": 8, "res32x4_shuv1": 8, "res32x4_shuv2": 8, "wrn40_2_shuv1": 8}
    for pair, beta in expected.items():
        cfg = registration.base_cfg()
        cfg.merge_from_file(str(ROOT / f"configs/cifar100/aekt/{pair}.yaml"))
        assert cfg.AEKT.BETA == beta and cfg.AEKT.T == 4.0 and cfg.AEKT.WARMUP == 20


def test_generated_configs_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "tools/make_configs.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


BAD_VALUES = {
    "SOLVER.EPOCHS": 0, "SOLVER.BATCH_SIZE": -1, "DATASET.TEST.BATCH_SIZE": 0, "DATASET.NUM_WORKERS": -1,
    "DATASET.TYPE": "mnist", "SOLVER.LR": 0.0, "SOLVER.WEIGHT_DECAY": -1e-4, "SOLVER.MOMENTUM": 1.0,
    "SOLVER.LR_DECAY_STAGES": [180, 150], "SOLVER.LR_DECAY_RATE": 0.0, "SOLVER.TYPE": "Adam",
    "LOG.SAVE_CHECKPOINT_FREQ": 0, "KD.TEMPERATURE": 0, "KD.LOSS.CE_WEIGHT": -1.0, "KD.LOSS.KD_WEIGHT": -1.0,
    "DKD.T": -4.0, "DKD.ALPHA": -1.0, "DKD.BETA": -8.0, "DKD.CE_WEIGHT": -1.0, "DKD.WARMUP": -1,
    "DHKD.T": 0.0, "DHKD.ALPHA": -1.0, "DHKD.CE_WEIGHT": -1.0, "DHKD.LOSS": "mse", "DHKD.HEAD": "mlp",
    "DHKD.HIDDEN": 0, "DHKD.DROPOUT": 1.0, "DHKD.KD_OFF_EPOCH": -1, "DHKD.MAIN_KD_WEIGHT": -0.5,
    "DHKD.MAIN_KD_T": 0.0, "AEKT.T": 0.0, "AEKT.ALPHA": -1.0, "AEKT.BETA": -1.0, "AEKT.CE_WEIGHT": -1.0,
    "AEKT.WARMUP": -5, "AEKT.RATIO_MODE": "ratio", "AEKT.W_MAX": 0.0, "AEKT.RATIO_NORM": "max",
    "AEKT.RATIO_T": -1.0, "AEKT.SERIAL": "both", "AEKT.SERIAL_DECAY": "half", "EXT.ENGINE": "fast",
    "EXT.DEVICE": "gpu", "EXT.SEED": -1, "EXT.NONFINITE": "ignore", "EXT.TRAIN_SUBSET": -10, "EXT.THREADS": -1, "EXT.EXPORT_TEACHER_EPOCH": "first", "DHKD.HEAD_INIT": "xavier", "EXT.GRAD_PROBE_EVERY": -5,
    "EXT.FAST_DATA": "yes", "EXT.AMP": "fp8", "EXT.CHANNELS_LAST": True,
    "EXT.VAL_SPLIT": -1, "EXT.TEACHER_CACHE": "yes", "AEKT.SERIAL_LR": 0.0, "EXT.SNAPSHOT_MINUTES": -1.0,
    "CRD.FEAT.DIM": 0, "CRD.NCE.K": 0, "CRD.NCE.TEMPERATURE": 0.0, "CRD.NCE.MOMENTUM": -0.5,
    "CRD.LOSS.CE_WEIGHT": -1.0, "CRD.LOSS.FEAT_WEIGHT": -0.8, "CRD.MODE": "loose",
    "DIST.T": 0.0, "DIST.BETA": -1.0, "DIST.GAMMA": -1.0, "DIST.CE_WEIGHT": -1.0,
    "TTM.GAMMA": 0.0, "TTM.BETA": -45.0, "TTM.CE_WEIGHT": -1.0,
    "WTTM.GAMMA": 0.0, "WTTM.BETA": -4.0, "WTTM.CE_WEIGHT": -1.0,
}


def test_every_rule_has_a_failing_example():
    assert sorted(BAD_VALUES) == sorted(k for k, _ in RULES + registry.rules(builtin_only=True))


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_validation_rule_message(key):
    cfg = registration.base_cfg()
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = BAD_VALUES[key]
    with pytest.raises(UserError) as e:
        validate(cfg, standalone_engine=True)
    msg = str(e.value)
    assert "\n" not in msg and key in msg and repr(BAD_VALUES[key]) in msg and "expected" in msg


def test_engine_specific_rules():
    cfg = registration.base_cfg()
    cfg.SOLVER.TRAINER = "crd"
    with pytest.raises(UserError, match="SOLVER.TRAINER"):
        validate(cfg, standalone_engine=True)
    validate(cfg, standalone_engine=False)
    cfg.SOLVER.TRAINER = "align"
    cfg.DISTILLER.TYPE = "NONE"
    with pytest.raises(UserError, match="align"):
        validate(cfg, standalone_engine=True)


def test_experiment_name_follows_host_and_flattens_paths():
    from mdistiller_ext.runs.naming import experiment_name

    cfg = registration.base_cfg()
    cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.TAG = "proj", "tag"
    assert experiment_name(cfg, ["SOLVER.EPOCHS", "3"]) == os.path.join("proj", "tag,SOLVER.EPOCHS:3")
    name = experiment_name(cfg, ["LOG.PREFIX", "/tmp/a/b", "EXT.SEED", "1"])
    assert name == os.path.join("proj", "tag,LOG.PREFIX:_tmp_a_b,EXT.SEED:1")
    assert os.path.dirname(name) == "proj"  # one level: the value did not nest directories



def test_integers_are_accepted_for_float_keys_in_files_and_overrides(tmp_path):
    from mdistiller_ext.errors import UserError
    from mdistiller_ext.runs.naming import load_config

    path = tmp_path / "c.yaml"
    path.write_text("DISTILLER: {TYPE: DHKD}\nDHKD: {T: 3}\n")
    cfg = load_config(str(path), ["DHKD.ALPHA", "2"])
    assert cfg.DHKD.T == 3.0 and isinstance(cfg.DHKD.T, float) and isinstance(cfg.DHKD.ALPHA, float)
    path.write_text("DHKD: {TT: 3}\n")
    with pytest.raises(UserError, match=r"c.yaml: unknown config key DHKD.TT; did you mean DHKD.T\?"):
        load_config(str(path), [])
    path.write_text("SOLVER: {EPOCHS: many}\n")
    with pytest.raises(UserError, match="SOLVER.EPOCHS = 'many' has the wrong type: expected an integer"):
        load_config(str(path), [])


def test_an_unknown_key_is_matched_in_its_own_node_first():
    from mdistiller_ext.cli.train_args import unread_keys
    from mdistiller_ext.runs.naming import load_config

    cfg_file = str(ROOT / "configs" / "cifar10" / "dhkd" / "res20_res8.yaml")
    with pytest.raises(UserError, match=r"unknown config key DHKD.TEMPERATUR; did you mean DHKD.T\? \(DHKD has .*T\b"):
        load_config(cfg_file, ["DHKD.TEMPERATUR", "4"])
    cfg = load_config(cfg_file, ["KD.TEMPERATURE", "4", "DHKD.T", "3", "SOLVER.EPOCHS", "2"])
    assert unread_keys(cfg, ["KD.TEMPERATURE", "4", "DHKD.T", "3", "SOLVER.EPOCHS", "2"]) == ["KD.TEMPERATURE"]


@pytest.mark.slow
def test_another_methods_node_in_the_config_file_is_said_by_training_and_by_check(tmp_path):
    """A DHKD config that also sets KD.TEMPERATURE (never read): one warning line, in a run and in --check;
    another method's node at its default values (a full dump of a config) says nothing."""
    import subprocess
    import sys

    import yaml

    from mdistiller_ext.cli.train_args import unread_keys
    from mdistiller_ext.runs.naming import load_config

    cfg = yaml.safe_load((ROOT / "configs/cifar10/dhkd/res20_res8.yaml").read_text())
    cfg["KD"] = {"TEMPERATURE": 8}
    cfg["DKD"] = {"BETA": 8.0}  # the default: nothing set
    path = tmp_path / "dhkd_with_kd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert unread_keys(load_config(str(path), []), [], str(path)) == ["KD.TEMPERATURE"]
    r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--cfg", str(path), "--check"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: KD.TEMPERATURE is set, but DISTILLER.TYPE DHKD does not read the KD node") == 1


@pytest.mark.slow
@pytest.mark.parametrize("config", ["cifar10/kd/res56_res20", "cifar100/dhkd/res56_res20", "cifar100/dkd/res110_res32"])
def test_check_with_a_random_teacher_prints_losses_of_a_sensible_size(tmp_path, config):
    """The stand-in teacher's BatchNorm statistics come from a batch: its logits are a trained network's size
    (the check printed loss_kd 507221.5 before), and the line says what such losses mean."""
    import re
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--cfg", str(ROOT / "configs" / f"{config}.yaml"),
                        "--check", "EXT.CKPT_ROOT", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    kd = float(re.search(r"loss_kd ([\d.]+)", line).group(1))
    assert 0 < kd < 100 and "random stand-in teacher" in line, line


@pytest.mark.parametrize("config", ["cifar100/dhkd/res32x4_res8x4", "cifar100/aekt/res56_res20", "imagenet/r34_r18/dhkd",
                                    "cifar10/kd/res20_res8"])
def test_check_builds_and_steps_a_config_without_data_teacher_or_output(tmp_path, config):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--cfg", str(ROOT / "configs" / f"{config}.yaml"),
                        "--check"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "a randomly initialised teacher stands in" in r.stdout and "check passed:" in r.stdout
    assert list(tmp_path.iterdir()) == []  # no data, no output, no cache
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--cfg", str(ROOT / "configs" / f"{config}.yaml"),
                          "--check", "SOLVER.LR", "-1.0"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "SOLVER.LR = -1.0 is invalid" in bad.stderr

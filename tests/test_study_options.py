"""The options the CIFAR-10 study needs: a per-step warm-up in fractional epochs (the host's per-epoch
rule for whole ones), the validation split, AEKT's per-epoch diagnostics and SERIAL_LR."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller_ext.methods import losses
from mdistiller_ext.host import registration
from mdistiller_ext.runs import worklog
from mdistiller_ext.data.datasets import build_splits, stratified_holdout
from mdistiller_ext.errors import UserError
from mdistiller_ext.data.device import DeviceCifarLoader
from mdistiller_ext.methods.aekt import AEKT
from mdistiller_ext.methods.base import Distiller, warmup_factor
from mdistiller_ext.methods.dkd import DKD
from mdistiller_ext.host.standalone.models import cifar_model_dict
from mdistiller_ext.validate import validate

from .conftest import write_cifar10_jpeg_tar

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def resnet8(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cifar_model_dict["resnet8"][0](num_classes=10)


# ----- warm-up -----

def test_whole_number_warmup_is_the_hosts_per_epoch_rule_whatever_the_step():
    for epoch in (1, 2, 19, 20, 21, 240):
        for progress in (epoch - 1 + 0.01, epoch - 0.5, epoch):
            assert warmup_factor(epoch, 20, progress) == min(epoch / 20, 1.0)
    assert warmup_factor(7, 0, 6.5) == 1.0


def test_fractional_warmup_ramps_per_step():
    # 20/240 of a 15-epoch schedule: 1.25 epochs
    assert warmup_factor(1, 1.25, 0.125) == pytest.approx(0.1)
    assert warmup_factor(1, 1.25, 1.0) == pytest.approx(0.8)
    assert warmup_factor(2, 1.25, 1.25) == 1.0 and warmup_factor(2, 1.25, 1.9) == 1.0
    # the per-epoch rule is the ramp's value at each epoch's end
    assert warmup_factor(1, 2.5, 1.0) == pytest.approx(1 / 2.5)


def test_fractional_warmup_is_accepted_from_yaml_and_command_line(tmp_path):
    from mdistiller_ext.config import merge_overrides

    cfg = registration.base_cfg()
    merge_overrides(cfg, ["DKD.WARMUP", "1.25", "AEKT.WARMUP", "0.5"])
    assert cfg.DKD.WARMUP == 1.25 and cfg.AEKT.WARMUP == 0.5
    with pytest.raises(UserError, match="wrong type"):
        merge_overrides(cfg, ["SOLVER.EPOCHS", "1.5"])


@pytest.mark.parametrize("key,value", [("DKD.WARMUP", 1.25), ("AEKT.WARMUP", 0.5), ("AEKT.SERIAL_LR", 0.1),
                                       ("EXT.VAL_SPLIT", 100)])
def test_options_only_this_engine_honours_are_refused_on_the_host_route(key, value):
    cfg = registration.base_cfg()
    cfg.DISTILLER.TYPE = key.split(".")[0] if key[0] != "E" else "KD"
    node, leaf = key.split(".")
    cfg[node][leaf] = value
    validate(cfg, standalone_engine=True)
    with pytest.raises(UserError, match=f"{key}.*EXT.ENGINE ext"):
        validate(cfg, standalone_engine=False)


@pytest.mark.host
def test_dkd_warmup_equals_mdistillers_dkd_at_every_epoch_and_step():
    from mdistiller.distillers import DKD as HostDKD

    cfg = registration.base_cfg()
    cfg.DKD.WARMUP = 20
    student, teacher = resnet8(0), resnet8(1).eval()
    ours, theirs = DKD(student, teacher, cfg), HostDKD(student, teacher, cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for epoch in (1, 2, 10, 19, 20, 21, 240):
        for progress in (epoch - 0.99, epoch - 0.5, epoch):
            torch.manual_seed(0)
            _, a = ours.forward_train(x, y, epoch=epoch, progress=progress)
            torch.manual_seed(0)
            _, b = theirs.forward_train(image=x, target=y, epoch=epoch)
            torch.testing.assert_close(a["loss_kd"], b["loss_kd"], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a["loss_ce"], b["loss_ce"], rtol=1e-6, atol=1e-7)


# ----- the engine: progress per step, the validation split, diagnostics, SERIAL_LR -----

class Recording(Distiller):
    """CE on the student; remembers the keyword arguments of every step."""

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.seen = []

    def forward_train(self, image, target, **kwargs):
        self.seen.append({k: v for k, v in kwargs.items() if k != "teacher_logits"})
        logits, _ = self.student(image)
        return logits, {"loss_ce": F.cross_entropy(logits, target)}


def loaders(n_train=40, n_test=16, n_val=10, batch=16):
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, size=(n_train + n_test + n_val, 32, 32, 3)).astype(np.uint8)
    y = np.arange(len(x)) % 10
    cpu = torch.device("cpu")
    train = DeviceCifarLoader(x[:n_train], y[:n_train], batch, MEAN, STD, cpu, True)
    test = DeviceCifarLoader(x[n_train:n_train + n_test], y[n_train:n_train + n_test], 32, MEAN, STD, cpu, False)
    val = DeviceCifarLoader(x[n_train + n_test:], y[n_train + n_test:], 32, MEAN, STD, cpu, False)
    return train, test, val


def trainer_for(distiller, cfg, tmp_path, **kwargs):
    from mdistiller_ext.engine.trainer import Trainer

    cfg.LOG.PREFIX = str(tmp_path)
    cfg.EXT.PROGRESS = False
    train, test, val = loaders()
    return Trainer("run", distiller, train, test, cfg, torch.device("cpu"), holdout_loader=val, **kwargs)


def test_engine_passes_the_progress_of_every_step_and_logs_the_validation_split(tmp_path):
    cfg = registration.base_cfg()
    cfg.SOLVER.EPOCHS = 2
    d = Recording(resnet8(), resnet8(1), cfg)
    trainer = trainer_for(d, cfg, tmp_path, data_record={"val_split": {"images": 10, "seed": 0}})
    trainer.train()
    # 40 images in batches of 16: 3 steps an epoch
    assert [s["epoch"] for s in d.seen] == [1, 1, 1, 2, 2, 2]
    assert [s["progress"] for s in d.seen] == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    log = worklog.read(str(tmp_path / "run" / "worklog.txt"))
    assert {"val_acc", "val_acc_top5", "val_loss", "test_acc"} <= set(log.epochs[2])
    assert json.loads((tmp_path / "run" / "runtime.json").read_text())["val_split"] == {"images": 10, "seed": 0}


def test_aekt_serial_lr_scales_only_the_serialization_layer(tmp_path):
    cfg = registration.base_cfg()
    cfg.DISTILLER.TYPE = "AEKT"
    cfg.SOLVER.EPOCHS, cfg.SOLVER.LR = 1, 0.05
    cfg.AEKT.SERIAL_LR = 0.1
    d = AEKT(resnet8(), resnet8(1).eval(), cfg)
    trainer = trainer_for(d, cfg, tmp_path)
    groups = trainer.optimizer.param_groups
    assert [g["lr_mult"] for g in groups] == [1.0, 0.1]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in d.serial.parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(d.get_learnable_parameters()))
    trainer.train()
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.05, 0.005])
    log = worklog.read(str(tmp_path / "run" / "worklog.txt"))
    assert {"aekt_w_mean", "aekt_w_max", "aekt_explicit", "aekt_implicit", "aekt_serial_dist",
            "aekt_serial_smin"} <= set(log.epochs[1])
    cfg.AEKT.SERIAL_LR = 1.0  # the default: one group, as before the option existed
    assert len(AEKT(resnet8(), resnet8(1), cfg).param_groups()) == 1


def test_aekt_diagnostics_are_the_epochs_means_and_the_layers_geometry():
    cfg = registration.base_cfg()
    d = AEKT(resnet8(), resnet8(1).eval(), cfg)
    d.train()
    c = cfg.AEKT
    ws, explicit, implicit = [], [], []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(5, 3, 32, 32, generator=g), torch.randint(0, 10, (5,), generator=g)
        z_t = torch.randn(5, 10, generator=g) * 4
        d.forward_train(x, y, epoch=3, teacher_logits=z_t)
        with torch.no_grad():
            z_cls, z_kd = d._heads(x)
            w, tckd, nckd = losses.aekt_terms(z_kd, z_t, y, c.T, c.RATIO_MODE, c.W_MAX, c.RATIO_NORM, c.RATIO_T)
        ws.append(w)
        explicit.append((c.ALPHA * w * tckd).mean())
        implicit.append((c.BETA * nckd).mean())
    out = d.take_diagnostics()
    w = torch.cat(ws)
    assert out["aekt_w_mean"] == pytest.approx(float(w.mean()), rel=1e-5)
    assert out["aekt_w_max"] == pytest.approx(float(w.max()), rel=1e-6)
    assert out["aekt_explicit"] == pytest.approx(float(torch.stack(explicit).mean()), rel=1e-4)
    assert out["aekt_implicit"] == pytest.approx(float(torch.stack(implicit).mean()), rel=1e-4)
    assert out["aekt_serial_dist"] == 0.0 and out["aekt_serial_smin"] == pytest.approx(1.0)
    with torch.no_grad():
        d.serial.delta.copy_(torch.diag(torch.linspace(-0.5, 0.4, 10)))
    d.forward_train(x, y, epoch=3, teacher_logits=z_t)
    out = d.take_diagnostics()
    assert out["aekt_serial_dist"] == pytest.approx(float(torch.linspace(-0.5, 0.4, 10).norm()), rel=1e-5)
    assert out["aekt_serial_smin"] == pytest.approx(0.5, rel=1e-5)
    assert d.take_diagnostics() == {}  # taken: the next epoch starts from nothing


# ----- the validation split -----

def test_stratified_holdout_takes_each_class_in_proportion():
    labels = np.repeat(np.arange(4), [50, 30, 10, 10])
    held = stratified_holdout(labels, 20)
    assert len(held) == 20 and len(set(held)) == 20
    assert np.bincount(labels[held]).tolist() == [10, 6, 2, 2]
    assert np.array_equal(held, stratified_holdout(labels, 20))  # a fixed draw


def cfg_for(root, **ext):
    cfg = registration.base_cfg()
    cfg.DATASET.TYPE = "cifar10"
    cfg.EXT.DATA_ROOT = cfg.EXT.DATA_CACHE = str(root)
    cfg.EXT.DOWNLOAD = False
    for k, v in ext.items():
        cfg.EXT[k] = v
    return cfg


def test_validation_split_is_held_out_the_same_for_every_seed(tmp_path):
    write_cifar10_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz", n_train=10, n_test=2)
    a = build_splits(cfg_for(tmp_path, VAL_SPLIT=20, SEED=0))
    b = build_splits(cfg_for(tmp_path, VAL_SPLIT=20, SEED=7))
    assert np.array_equal(a.holdout.origin, b.holdout.origin) and np.array_equal(a.train.origin, b.train.origin)
    assert np.bincount(a.holdout.labels).tolist() == [2] * 10
    assert len(a.train) == 80 and not set(a.train.origin) & set(a.holdout.origin)
    assert sorted(set(a.train.origin) | set(a.holdout.origin)) == list(range(100))
    whole = build_splits(cfg_for(tmp_path))
    assert np.array_equal(a.holdout.images, whole.train.images[a.holdout.origin])
    assert a.record["val_split"]["images"] == 20 and a.record["val_split"]["seed"] == 0
    # a subset is drawn from what the split leaves
    c = build_splits(cfg_for(tmp_path, VAL_SPLIT=20, TRAIN_SUBSET=30))
    assert len(c.train) == 30 and not set(c.train.origin) & set(a.holdout.origin)
    with pytest.raises(UserError, match="VAL_SPLIT = 100 leaves no training images"):
        build_splits(cfg_for(tmp_path, VAL_SPLIT=100))

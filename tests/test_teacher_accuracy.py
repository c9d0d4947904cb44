"""A teacher's test accuracy is known before training (recorded, remembered or measured once), and a
teacher that does not clearly beat chance is refused in one line before the run directory exists."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mdistiller_ext.errors import UserError
from mdistiller_ext.host import registration
from mdistiller_ext.host.standalone.models import cifar_model_dict
from mdistiller_ext.engine import teacher_accuracy as ta

from .conftest import class_images, run_train, write_cifar10_jpeg_tar


class NearestColour(nn.Module):
    """A 'teacher' that classifies the tests' toy images by their mean colour: right on nearly all."""

    def __init__(self, colours: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("colours", torch.tensor(colours, dtype=torch.float32))

    def forward(self, x: torch.Tensor):
        return -torch.cdist(x.mean(dim=(2, 3)), self.colours), {}


def toy_batches(n_per_class: int = 5, batch: int = 16):
    x, y = class_images(n_per_class, 10, seed=1)
    images = torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2)
    labels = torch.tensor(y)
    return [(images[i:i + batch], labels[i:i + batch]) for i in range(0, len(labels), batch)]


def cfg_in(tmp_path, **ext):
    cfg = registration.base_cfg()
    cfg.DATASET.TYPE = "cifar10"
    cfg.EXT.DATA_CACHE = str(tmp_path)
    for k, v in ext.items():
        cfg.EXT[k] = v
    return cfg


def test_least_accuracy_is_twice_chance_or_the_binomial_bound():
    # 10,000 CIFAR-100 images: the binomial bound (1.31%) is below twice chance (2%)
    assert ta.least_accuracy(100, 10_000) == pytest.approx(2.0)
    # 20 CIFAR-10 images: chance reaches 2 hits on average; the bound is 2 + 3.09 * sqrt(1.8) hits
    assert ta.least_accuracy(10, 20) == pytest.approx(100 * (2 + 3.09 * math.sqrt(20 * 0.1 * 0.9)) / 20)
    assert ta.least_accuracy(10, 10_000) == pytest.approx(20.0)


def test_measured_once_then_remembered_by_sha256(tmp_path, monkeypatch):
    colours = np.random.RandomState(123).randint(30, 225, size=(10, 3))
    teacher = NearestColour(colours)
    batches = toy_batches()
    cfg = cfg_in(tmp_path)
    info = {"path": "t.pth", "sha256": "ab" * 32}
    record = {"images": 50, "sha256": "cd" * 32}
    got = ta.known_accuracy(cfg, info, teacher, batches, lambda b: b, record)
    hits = sum(int((teacher(x)[0].argmax(1) == y).sum()) for x, y in batches)
    assert got["test_acc_source"] == "measured" and got["test_images"] == 50
    assert got["test_acc"] == pytest.approx(100.0 * hits / 50) and got["test_acc"] > 90
    stored = json.loads(open(ta.memory_path(cfg, "ab" * 32, "cd" * 32)).read())
    assert stored["test_acc"] == got["test_acc"] and stored["dataset"] == "cifar10"

    def never(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(ta, "measure", never)
    again = ta.known_accuracy(cfg, info, teacher, batches, lambda b: b, record)
    assert again["test_acc_source"] == "remembered" and again["test_acc"] == got["test_acc"]
    # another test split (another fingerprint) is another measurement
    with pytest.raises(AssertionError, match="measured again"):
        ta.known_accuracy(cfg, info, teacher, batches, lambda b: b, {"images": 50, "sha256": "ef" * 32})
    # a recorded accuracy (an export record, a run's worklog) is taken as it is
    recorded = ta.known_accuracy(cfg, dict(info, test_acc=71.5), teacher, batches, lambda b: b, record)
    assert recorded["test_acc"] == 71.5 and recorded["test_acc_source"] == "recorded"


def test_a_useless_teacher_is_refused_in_one_line(tmp_path):
    cfg = cfg_in(tmp_path)
    info = {"path": "t.pth", "test_acc": 11.0, "test_images": 10_000}
    with pytest.raises(UserError, match=r"test top-1 11.00% on cifar10 \(10.0% is chance\): it does not clearly beat") as e:
        ta.refuse_useless(cfg, info, 10)
    assert "\n" not in str(e.value) and "EXT.TEACHER_MIN_ACC 0" in str(e.value)
    ta.refuse_useless(cfg, dict(info, test_acc=25.0), 10)  # twice chance and far beyond the binomial bound
    ta.refuse_useless(cfg_in(tmp_path, TEACHER_MIN_ACC=0.0), info, 10)  # 0: any teacher
    with pytest.raises(UserError, match="below EXT.TEACHER_MIN_ACC 50"):
        ta.refuse_useless(cfg_in(tmp_path, TEACHER_MIN_ACC=50.0), dict(info, test_acc=40.0), 10)


@pytest.mark.slow
def test_train_refuses_a_random_teacher_and_remembers_a_measured_one(tmp_path):
    """A random plain state_dict teacher: measured, remembered and refused before anything is written; with
    EXT.TEACHER_MIN_ACC 0 it trains, its teacher line and runtime.json give the remembered accuracy."""
    write_cifar10_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz", n_train=3, n_test=2)
    teacher = tmp_path / "random_resnet8.pth"
    torch.manual_seed(0)
    torch.save(cifar_model_dict["resnet8"][0](num_classes=10).state_dict(), teacher)  # plain, no {"model": ...}
    common = ["--cfg", "configs/cifar10/kd/res20_res8.yaml", "DISTILLER.TEACHER", "resnet8", "EXT.TEACHER_CKPT", str(teacher),
              "EXT.DATA_ROOT", str(tmp_path), "EXT.DATA_CACHE", str(tmp_path / "cache"), "SOLVER.EPOCHS", "1",
              "EXT.PROGRESS", "False", "EXT.DOWNLOAD", "False", "SOLVER.BATCH_SIZE", "10"]
    from .conftest import ROOT

    r = run_train(common + ["LOG.PREFIX", str(tmp_path / "out")], ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "does not clearly beat chance" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    assert len(list((tmp_path / "cache" / ta.FOLDER).glob("*.json"))) == 1  # measured once, even when refused
    r = run_train(common + ["LOG.PREFIX", str(tmp_path / "out"), "EXT.TEACHER_MIN_ACC", "0"], ROOT)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("teacher:"))
    assert "on the cifar10 test split (20 images), measured on" in line and "remembered by its sha256" in line, line
    runtime = json.loads(next((tmp_path / "out").rglob("runtime.json")).read_text())
    assert runtime["teacher"]["test_acc_source"] == "remembered" and runtime["teacher"]["test_images"] == 20
    # another cache folder knows nothing of it: measured now
    r = run_train(common + ["LOG.PREFIX", str(tmp_path / "out2"), "EXT.TEACHER_MIN_ACC", "0",
                            "EXT.DATA_CACHE", str(tmp_path / "cache2")], ROOT)
    assert r.returncode == 0, r.stderr
    assert "measured now" in next(x for x in r.stdout.splitlines() if x.startswith("teacher:"))

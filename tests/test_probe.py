"""The gradient-conflict probe: its values against hand computations, and that it changes nothing."""
import csv

import pytest
import torch
import torch.nn.functional as F
import yaml

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.runs import worklog
from mdistiller_ext import registry
from mdistiller_ext.methods.base import Distiller, hook
from mdistiller_ext.methods.dhkd import DHKD
from mdistiller_ext.engine.probe import GradProbe, conflict, shared_parameters
from mdistiller_ext.methods.heads import classifier_of

from .conftest import ROOT, run_train, write_cifar10_jpeg_tar


def test_conflict_closed_form():
    # loss_ce = (w.a)^2 and loss_kd = w.b: g_ce = 2 (w.a) a, g_kd = b
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    b = torch.tensor([-3.0, 0.25, 1.0], dtype=torch.float64)
    ce, kd = (w @ a) ** 2, w @ b
    cos, ratio = conflict(ce, kd, [w]).tolist()
    wa = float(w.detach() @ a)
    g_ce = 2 * wa * a
    assert cos == pytest.approx(float(g_ce @ b / (g_ce.norm() * b.norm())), rel=1e-12)
    assert ratio == pytest.approx(float(b.norm() / g_ce.norm()), rel=1e-12)


def test_conflict_is_nan_when_a_gradient_vanishes():
    w = torch.ones(2, requires_grad=True)
    cos, ratio = conflict((w * w).sum(), (0.0 * w).sum(), [w]).tolist()
    assert cos != cos and ratio != ratio


def test_shared_parameters_are_the_student_without_its_classifier():
    student = host.cifar_model_dict["resnet8"][0](num_classes=10)
    shared = {id(p) for p in shared_parameters(student)}
    head = {id(p) for p in classifier_of(student).parameters()}
    assert shared and not shared & head
    assert shared | head == {id(p) for p in student.parameters()}


def test_probe_on_a_distiller_matches_separate_backward_passes():
    torch.manual_seed(0)
    cfg = registration.base_cfg()
    student = host.cifar_model_dict["resnet8"][0](num_classes=10).double()
    teacher = host.cifar_model_dict["resnet8"][0](num_classes=10).double()
    d = DHKD(student, teacher, cfg).double().train()
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (8,))
    probe = GradProbe(1, student)
    _, losses = d(image=x, target=y, epoch=1)
    probe.measure(0, losses)
    got = probe.take_epoch()
    # the same quantities through .backward() into .grad, one loss at a time
    flat = {}
    for name in ("loss_ce", "loss_kd"):
        d.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        _, again = d(image=x, target=y, epoch=1)
        again[name].backward()
        flat[name] = torch.cat([p.grad.reshape(-1) for p in probe.params])
    ce, kd = flat["loss_ce"], flat["loss_kd"]
    assert got["steps"] == [0]
    assert got["cos"][0] == pytest.approx(float(F.cosine_similarity(ce, kd, dim=0)), rel=1e-9)
    assert got["ratio"][0] == pytest.approx(float(kd.norm() / ce.norm()), rel=1e-9)
    assert got["mean_cos"] == got["cos"][0]
    assert probe.take_epoch() is None  # reset after each epoch


@pytest.mark.slow
def test_probe_does_not_change_training(tmp_path):
    (tmp_path / "data").mkdir()
    write_cifar10_jpeg_tar(tmp_path / "data" / "cifar10-jpeg.tar.gz", n_train=6, n_test=3)
    torch.manual_seed(1)
    torch.save({"model": host.cifar_model_dict["resnet20"][0](num_classes=10).state_dict()}, tmp_path / "t.pth")
    cfg = yaml.safe_load((ROOT / "configs/cifar10/dhkd/res20_res8.yaml").read_text())
    cfg.update({"DATASET": {"TYPE": "cifar10", "NUM_WORKERS": 0, "TEST": {"BATCH_SIZE": 32}}, "LOG": {"PREFIX": "out"},
                "EXT": {"DATA_ROOT": "data", "DATA_CACHE": "data", "PROGRESS": False, "DOWNLOAD": False, "TEACHER_MIN_ACC": 0.0,
                        "TEACHER_CKPT": "t.pth"}})
    cfg["SOLVER"].update({"EPOCHS": 2, "BATCH_SIZE": 16})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    runs = {}
    for every in (0, 1):
        r = run_train(["--cfg", "c.yaml", "EXT.GRAD_PROBE_EVERY", str(every)], tmp_path)
        assert r.returncode == 0, r.stderr
        runs[every] = tmp_path / "out" / "cifar10_dhkd" / f"dhkd,resnet20,resnet8,EXT.GRAD_PROBE_EVERY:{every}"
    off = torch.load(runs[0] / "latest", weights_only=True)
    on = torch.load(runs[1] / "latest", weights_only=True)
    for k, v in off["model"].items():
        assert torch.equal(v, on["model"][k]), k
    assert off["best_acc"] == on["best_acc"]
    log_on, log_off = worklog.read(runs[1] / "worklog.txt"), worklog.read(runs[0] / "worklog.txt")
    assert "grad_cos" in log_on.epochs[2] and "grad_cos" not in log_off.epochs[2]
    with open(runs[1] / "grad_probe.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1] * 4 + [2] * 4  # 60 images, batch 16: 4 steps per epoch
    assert all(-1 <= float(r["cos"]) <= 1 for r in rows)
    assert not (runs[0] / "grad_probe.csv").exists()
    # a resume drops rows written after the checkpoint's epoch (here: a stray epoch-3 row)
    with open(runs[1] / "grad_probe.csv", "a") as f:
        f.write("3,0,8,0.5,1.0\n")
    r = run_train(["--cfg", "c.yaml", "EXT.GRAD_PROBE_EVERY", "1", "--resume"], tmp_path)
    assert r.returncode == 0, r.stderr
    with open(runs[1] / "grad_probe.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1] * 4 + [2] * 4


def test_every_hook_works_on_mdistillers_own_vanilla():
    """hook() binds the declared defaults to classes that are not this project's Distiller (the host's
    Vanilla when mdistiller is installed, its stand-in otherwise); they must not read our attributes."""
    vanilla_cls = registry.get("NONE").distiller
    assert not issubclass(vanilla_cls, Distiller)
    vanilla = vanilla_cls(host.cifar_model_dict["resnet8"][0](num_classes=10))
    ce, kd = torch.tensor(1.5), torch.tensor(0.25)
    assert hook(vanilla, "split_losses")({"loss_ce": ce}) is None
    assert hook(vanilla, "split_losses")({"loss_ce": ce, "loss_kd": kd}) == (ce, kd)
    assert hook(vanilla, "get_extra_parameters")() == 0
    assert hook(vanilla, "take_diagnostics")() == {}
    (group,) = hook(vanilla, "param_groups")()
    assert group["lr_mult"] == 1.0 and len(group["params"]) == len(list(vanilla.get_learnable_parameters()))
    vanilla.eval()
    assert hook(vanilla, "forward_test_heads")(torch.zeros(2, 3, 32, 32))["main"].shape == (2, 10)


def test_a_vanilla_run_with_the_probe_on_trains_and_writes_no_probe_file(tmp_path):
    # the CE-only arm of a study shares the sweep's EXT.GRAD_PROBE_EVERY; with nothing to split it measures nothing
    (tmp_path / "data").mkdir()
    write_cifar10_jpeg_tar(tmp_path / "data" / "cifar10-jpeg.tar.gz", n_train=4, n_test=2)
    cfg = yaml.safe_load((ROOT / "configs/cifar10/vanilla/resnet20.yaml").read_text())
    cfg.update({"DATASET": {"TYPE": "cifar10", "NUM_WORKERS": 0, "TEST": {"BATCH_SIZE": 32}}, "LOG": {"PREFIX": "out"},
                "EXT": {"DATA_ROOT": "data", "DATA_CACHE": "data", "PROGRESS": False, "DOWNLOAD": False, "TEACHER_MIN_ACC": 0.0,
                        "GRAD_PROBE_EVERY": 1, "EXPORT_TEACHER": False}})
    cfg["DISTILLER"]["STUDENT"] = "resnet8"
    cfg["SOLVER"].update({"EPOCHS": 1, "BATCH_SIZE": 16})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_train(["--cfg", "c.yaml"], tmp_path)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "out").glob("*/*")
    assert "best_acc" in (run / "worklog.txt").read_text()
    assert not (run / "grad_probe.csv").exists()


def test_the_probe_scales_fp16_losses_and_measures_the_same_cosine_and_ratio():
    torch.manual_seed(0)
    student = host.cifar_model_dict["resnet8"][0](num_classes=10)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    logits, _ = student(x)
    losses = {"loss_ce": torch.nn.functional.cross_entropy(logits, y), "loss_kd": (logits ** 2).mean() * 1e-3}
    plain, scaled = GradProbe(1, student), GradProbe(1, student, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    plain.measure(0, losses)
    scaled.measure(0, losses)
    a, b = plain.take_epoch(), scaled.take_epoch()
    assert a["cos"] == pytest.approx(b["cos"], rel=1e-9) and a["ratio"] == pytest.approx(b["ratio"], rel=1e-9)

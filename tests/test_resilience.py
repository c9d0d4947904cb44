"""Crash safety with real processes: kill -9 mid-epoch then --resume, and the non-finite guard."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mdistiller_ext.runs import worklog
from mdistiller_ext.host.standalone.models import cifar_model_dict

from .conftest import ROOT, write_cifar10_jpeg_tar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_work(tmp_path_factory.mktemp("resilience"))


def make_work(w: Path) -> Path:
    """60 images per class of tiny CIFAR-10 and a resnet8 teacher, in ``w``."""
    (w / "data").mkdir()
    write_cifar10_jpeg_tar(w / "data" / "cifar10-jpeg.tar.gz", n_train=60, n_test=5)
    teacher = w / "ckpts" / "cifar10_teachers" / "resnet8_vanilla" / "ckpt_epoch_240.pth"
    teacher.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": cifar_model_dict["resnet8"][0](num_classes=10).state_dict()}, teacher)
    return w


def write_cfg(work: Path, tag: str, **over) -> str:
    cfg = yaml.safe_load((ROOT / "configs/cifar10/dhkd/res20_res8.yaml").read_text())
    cfg["DISTILLER"]["TEACHER"] = "resnet8"
    cfg["EXPERIMENT"]["TAG"] = tag
    cfg["SOLVER"].update({"EPOCHS": 3, "BATCH_SIZE": 16})
    cfg["DATASET"].update({"NUM_WORKERS": 0, "TEST": {"BATCH_SIZE": 50}})
    cfg["LOG"]["PREFIX"] = "out"
    # a random teacher (the tests' numbers are about the engine, not the teacher): accepted explicitly
    cfg["EXT"] = {"DATA_ROOT": "data", "DATA_CACHE": "data", "CKPT_ROOT": "ckpts", "PROGRESS": False,
                  "DOWNLOAD": False, "DETERMINISTIC": True, "TEACHER_MIN_ACC": 0.0}
    for key, value in over.items():
        node, leaf = key.split("__")
        cfg.setdefault(node, {})[leaf] = value
    (work / f"{tag}.yaml").write_text(yaml.safe_dump(cfg))
    return f"{tag}.yaml"


def cmd(cfg: str, *extra: str):
    return [sys.executable, str(ROOT / "tools/train.py"), "--cfg", cfg, *extra]


ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _numbers(log):
    """A worklog's epochs without the teacher cache's hit rate, which depends on what ran before (an earlier run
    filled the cache)."""
    return {e: {k: v for k, v in vals.items() if k != "teacher_cache_hit"} for e, vals in log.epochs.items()}


def test_kill_9_mid_epoch_then_resume_is_bitwise_identical(work):
    straight = subprocess.run(cmd(write_cfg(work, "straight")), cwd=work, env=ENV, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    cfg = write_cfg(work, "killed")
    log = work / "out/cifar10_dhkd/killed/worklog.txt"
    proc = subprocess.Popen(cmd(cfg), cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and "epoch: 1" in log.read_text()):
        time.sleep(0.02)
    time.sleep(0.3)  # well inside epoch 2 (an epoch here takes a few seconds)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(work / "out/cifar10_dhkd/killed/latest", weights_only=True)
    assert state["epoch"] == 1, "the kill did not land in epoch 2"
    resumed = subprocess.run(cmd(cfg, "--resume"), cwd=work, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(work / "out/cifar10_dhkd/straight/student_latest", weights_only=True)["model"]
    b = torch.load(work / "out/cifar10_dhkd/killed/student_latest", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = worklog.read(str(work / "out/cifar10_dhkd/straight/worklog.txt")), worklog.read(str(log))
    assert _numbers(la) == _numbers(lb) and la.best_acc == lb.best_acc and list(lb.epochs) == [1, 2, 3]
    # the killed segment's cost was recorded as its epoch finished, the resumed one's after it
    cost = json.loads((work / "out/cifar10_dhkd/killed/runtime.json").read_text())["cost"]
    assert [c["epochs"] for c in cost] == [[1, 1], [2, 3]] and all(c["cpu_s"] > 0 for c in cost)


@pytest.mark.parametrize("path", ["fast", "workers"])
def test_kill_9_after_an_in_epoch_snapshot_resumes_from_it_bitwise(work, path):
    """EXT.SNAPSHOT_MINUTES: a process killed in epoch 2 after a snapshot of it resumes at the snapshot's step
    and ends as the uninterrupted run (without snapshots) does, on the device-resident path and on the
    DataLoader path with worker processes (whose batches resume passes over by drawing them)."""
    over = dict(SOLVER__EPOCHS=2)
    if path == "workers":
        over.update(EXT__FAST_DATA="off", DATASET__NUM_WORKERS=2, EXT__TRAIN_SUBSET=160)
    straight = subprocess.run(cmd(write_cfg(work, f"snap_straight_{path}", **over, EXT__SNAPSHOT_MINUTES=0.0)),
                              cwd=work, env=ENV, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    cfg = write_cfg(work, f"snap_killed_{path}", **over, EXT__SNAPSHOT_MINUTES=1e-9)  # after every step
    run = work / "out/cifar10_dhkd" / f"snap_killed_{path}"
    latest, snap = run / "latest", run / "latest_partial"
    proc = subprocess.Popen(cmd(cfg), cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def in_epoch_2() -> bool:  # epoch 1's checkpoint, and a snapshot written after it
        try:
            return latest.stat().st_mtime_ns < snap.stat().st_mtime_ns
        except FileNotFoundError:
            return False

    deadline = time.time() + 240
    while time.time() < deadline and not in_epoch_2() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    held = torch.load(snap, weights_only=True)
    assert held["epoch"] == 2 and torch.load(latest, weights_only=True)["epoch"] == 1, "the kill did not land in epoch 2"
    resumed = subprocess.run(cmd(cfg, "--resume"), cwd=work, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming out/cifar10_dhkd/snap_killed_{path} in epoch 2 at step " in resumed.stdout
    straight_run = work / "out/cifar10_dhkd" / f"snap_straight_{path}"
    a = torch.load(straight_run / "latest", weights_only=True)
    b = torch.load(latest, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert all(torch.equal(a["optimizer"]["state"][i]["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
               for i in a["optimizer"]["state"])
    la, lb = worklog.read(str(straight_run / "worklog.txt")), worklog.read(str(run / "worklog.txt"))
    assert _numbers(la) == _numbers(lb) and list(lb.epochs) == [1, 2] and lb.finished
    assert "steps of epoch 2, from its snapshot)" in (run / "worklog.txt").read_text()
    assert not snap.exists()


def test_dataloader_path_with_workers_resumes_bitwise(work):
    """EXT.FAST_DATA off with 2 worker processes: a run stopped after epoch 1 and resumed gives the
    uninterrupted run's numbers and weights (persistent workers had kept epoch 1's seeds, so the resumed
    epoch 2 was augmented differently)."""
    over = dict(EXT__FAST_DATA="off", DATASET__NUM_WORKERS=2, SOLVER__EPOCHS=2, EXT__TRAIN_SUBSET=160)
    straight = subprocess.run(cmd(write_cfg(work, "workers_straight", **over)), cwd=work, env=ENV, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    cfg = write_cfg(work, "workers_resumed", **dict(over, SOLVER__EPOCHS=1))
    first = subprocess.run(cmd(cfg), cwd=work, env=ENV, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    write_cfg(work, "workers_resumed", **over)
    resumed = subprocess.run(cmd(cfg, "--resume", "--force-resume"), cwd=work, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    runs = [work / "out/cifar10_dhkd" / name for name in ("workers_straight", "workers_resumed")]
    a, b = (torch.load(r / "student_latest", weights_only=True)["model"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    la, lb = (worklog.read(str(r / "worklog.txt")) for r in runs)
    assert la.epochs == lb.epochs and list(la.epochs) == [1, 2]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(work):
    cfg = write_cfg(work, "diverge", SOLVER__EPOCHS=1)
    assert subprocess.run(cmd(cfg), cwd=work, env=ENV, capture_output=True).returncode == 0
    latest = work / "out/cifar10_dhkd/diverge/latest"
    before = torch.load(latest, weights_only=True)
    write_cfg(work, "diverge", SOLVER__EPOCHS=2, SOLVER__LR=1e30)
    r = subprocess.run(cmd(cfg, "--resume", "--force-resume"), cwd=work, env=ENV, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-finite" in lines[0] and "at epoch 2, step" in lines[0], r.stderr
    assert "loss_" in lines[0] and "(epoch 1)" in lines[0]
    after = torch.load(latest, weights_only=True)
    assert after["epoch"] == 1 and all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])


def test_non_finite_skip_mode_counts_batches(work):
    cfg = write_cfg(work, "skip", SOLVER__EPOCHS=1, SOLVER__LR=1e30, EXT__NONFINITE="skip")
    r = subprocess.run(cmd(cfg), cwd=work, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    log = worklog.read(str(work / "out/cifar10_dhkd/skip/worklog.txt"))
    assert log.epochs[1]["nonfinite_skipped"] > 0

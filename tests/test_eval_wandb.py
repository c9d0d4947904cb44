"""tools/eval.py on every kind of checkpoint, and LOG.WANDB with and without wandb."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdistiller_ext.runs import worklog
from mdistiller_ext.engine.wandb_log import tags_of
from mdistiller_ext.runs.naming import experiment_name, load_config

from .conftest import ROOT, run_train, write_cifar10_jpeg_tar

pytestmark = pytest.mark.slow
SMALL = ["SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "16", "EXT.PROGRESS", "False", "DATASET.TEST.BATCH_SIZE", "32",
         "EXT.TEACHER_MIN_ACC", "0"]  # random teachers: the tests are about eval and logging


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("evalwork")
    write_cifar10_jpeg_tar(w / "cifar10-jpeg.tar.gz", n_train=6, n_test=3)
    base = ["EXT.DATA_ROOT", ".", "EXT.DOWNLOAD", "False", *SMALL]
    for cfg, extra in (("vanilla/resnet20.yaml", []), ("dhkd/res20_res8.yaml", []),
                       ("aekt/res20_res8.yaml", ["AEKT.SERIAL", "kd_then_cls"])):
        r = run_train(["--cfg", str(ROOT / "configs/cifar10" / cfg), *base, *extra], w)
        assert r.returncode == 0, r.stderr[-2000:]
    return w


def run_dir(work: Path, method: str) -> Path:
    return next((work / "output" / f"cifar10_{method}").iterdir())


def evaluate(work: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools/eval.py"), *args], cwd=work, capture_output=True,
                          text=True, timeout=300)


def head_top1(stdout: str, head: str) -> float:
    line = next(line for line in stdout.splitlines() if line.startswith(f"head {head}:"))
    return float(line.split("top-1 ")[1].split()[0])


def test_eval_student_file_matches_the_worklog(work):
    run = run_dir(work, "dhkd")
    r = evaluate(work, "-c", str(run / "student_best"))
    assert r.returncode == 0, r.stderr
    assert head_top1(r.stdout, "main") == pytest.approx(worklog.read(run / "worklog.txt").best_acc, abs=0.01)
    assert "head aux" not in r.stdout  # a student file has the deployed head only


def test_eval_whole_distiller_reports_every_head(work):
    run = run_dir(work, "dhkd")
    log = worklog.read(run / "worklog.txt")
    r = evaluate(work, "-c", str(run / "latest"))
    assert r.returncode == 0, r.stderr
    assert head_top1(r.stdout, "main") == pytest.approx(log.epochs[2]["test_acc"], abs=0.01)
    assert head_top1(r.stdout, "aux") == pytest.approx(log.epochs[2]["test_acc_aux"], abs=0.01)


def test_eval_serialized_student_and_exported_teacher(work):
    run = run_dir(work, "aekt")  # kd_then_cls: the serialization layer is part of the saved student
    r = evaluate(work, "-c", str(run / "student_latest"))
    assert r.returncode == 0, r.stderr
    assert head_top1(r.stdout, "main") == pytest.approx(worklog.read(run / "worklog.txt").epochs[2]["test_acc"], abs=0.01)
    teacher = work / "download_ckpts/cifar10_teachers/resnet20_vanilla/ckpt_epoch_2.pth"
    r = evaluate(work, "-c", str(teacher), "-m", "resnet20", "-d", "cifar10", "--data-root", ".")
    assert r.returncode == 0 and "head main: top-1" in r.stdout, r.stderr


@pytest.mark.parametrize("case,args,message", [
    ("missing", ["-c", "nope.pth", "-m", "resnet8"], "checkpoint not found: nope.pth"),
    ("garbage", ["-c", "garbage.pth", "-m", "resnet8"], "not a torch checkpoint"),
    ("no model", ["-c", "download_ckpts/cifar10_teachers/resnet20_vanilla/ckpt_epoch_2.pth"], "name the architecture with -m"),
    ("wrong model", ["-c", "download_ckpts/cifar10_teachers/resnet20_vanilla/ckpt_epoch_2.pth", "-m", "resnet8",
                     "-d", "cifar10"], "does not fit the student resnet8"),
])
def test_eval_errors_are_one_line(work, case, args, message):
    # random bytes fail in different places of the reader; every one of them reads "not a torch checkpoint"
    (work / "garbage.pth").write_bytes(os.urandom(300))
    r = evaluate(work, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_wandb_names_and_tags_as_the_host():
    opts = ["SOLVER.EPOCHS", "5", "EXT.SEED", "1"]
    cfg = load_config(str(ROOT / "configs/cifar10/dhkd/res20_res8.yaml"), opts)
    name = experiment_name(cfg, opts)
    assert name == "cifar10_dhkd/dhkd,resnet20,resnet8,SOLVER.EPOCHS:5,EXT.SEED:1"
    # mdistiller: TAG.split(",") + ["KEY:VALUE" for each override]
    assert tags_of(cfg, name) == ["dhkd", "resnet20", "resnet8", "SOLVER.EPOCHS:5", "EXT.SEED:1"]


def test_wandb_offline_run_writes_local_files(work, tmp_path):
    pytest.importorskip("wandb")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true")
    cmd = [sys.executable, str(ROOT / "tools/train.py"), "--cfg", str(ROOT / "configs/cifar10/dhkd/res20_res8.yaml"),
           "EXT.DATA_ROOT", ".", *SMALL, "LOG.WANDB", "True", "EXPERIMENT.TAG", "dhkd,resnet20,resnet8,wb"]
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    # the run's project, name and tags, and the per-epoch keys the host logs
    for text in ("cifar10_dhkd", "cifar10_dhkd/dhkd,resnet20,resnet8,wb,EXT.DATA_ROOT:.", "EXT.DATA_ROOT:.", "wb",
                 "current lr", "test_acc", "test_acc_aux", "best_acc"):
        assert text.encode() in data, text


def test_without_wandb_one_line_and_training_goes_on(work, tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None  # as if not installed\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, str(ROOT / "tools/train.py"), "--cfg", str(ROOT / "configs/cifar10/dhkd/res20_res8.yaml"),
           "EXT.DATA_ROOT", ".", *SMALL, "LOG.WANDB", "True", "EXPERIMENT.TAG", "nowandb"]
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if "wandb" in line]
    assert lines == ["LOG.WANDB is True but wandb is not installed (pip install wandb); training goes on without it"]
    run = work / ("output/cifar10_dhkd/nowandb,EXT.DATA_ROOT:.,SOLVER.EPOCHS:2,SOLVER.BATCH_SIZE:16,"
                  "EXT.PROGRESS:False,DATASET.TEST.BATCH_SIZE:32,EXT.TEACHER_MIN_ACC:0,LOG.WANDB:True,EXPERIMENT.TAG:nowandb")
    assert worklog.read(run / "worklog.txt").finished


def test_eval_device_auto_is_this_machines_not_the_training_configs(work, tmp_path):
    run = run_dir(work, "dhkd")
    cfg = (run / "config.yaml").read_text().replace("DEVICE: auto", "DEVICE: cuda:3")  # trained on a GPU box
    assert "DEVICE: cuda:3" in cfg
    (tmp_path / "gpu_config.yaml").write_text(cfg)
    r = evaluate(work, "-c", str(run / "student_best"), "--cfg", str(tmp_path / "gpu_config.yaml"))
    assert r.returncode == 0, r.stderr
    assert "device: cpu" in r.stdout or torch.cuda.is_available()


def test_eval_accepts_a_run_directory(work, tmp_path):
    run = run_dir(work, "dhkd")
    r = evaluate(work, "-c", str(run))
    assert r.returncode == 0, r.stderr
    assert head_top1(r.stdout, "main") == pytest.approx(worklog.read(run / "worklog.txt").best_acc, abs=0.01)
    (tmp_path / "epoch_3").write_bytes(b"x")
    r = evaluate(work, "-c", str(tmp_path))
    assert r.returncode == 2 and "folder without student_best" in r.stderr and "epoch_3" in r.stderr


def test_eval_of_a_checkpoint_with_another_class_count_suggests_its_dataset(tmp_path, capsys):
    from mdistiller_ext.builders import build_model
    from mdistiller_ext.cli.eval import main

    path = tmp_path / "ckpt_epoch_5.pth"
    torch.save({"model": build_model("resnet8", "cifar10", 10).state_dict()}, path)
    assert main(["-c", str(path), "-m", "resnet8"]) == 2  # no config beside it: cifar100 by default
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "10, as cifar10, against 100" in err and "-d" in err

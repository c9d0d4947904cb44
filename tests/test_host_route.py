"""The host route for real: mdistiller's own trainers, its tools/eval.py, and the README's commands
with mdistiller installed. Every test here is marked ``host`` (CI's second environment installs
mdistiller from ../shared/vendor and fails these tests instead of skipping them).

mdistiller's trainers and eval script call ``.cuda()`` unconditionally; on a CPU-only machine the
tests below make those calls no-ops, inside the test only (monkeypatch, or a sitecustomize.py on
the PYTHONPATH of the host's own script). torchvision's CIFAR-100 class checks the real files' md5
sums; the host's eval script is given the test's tiny files by the same shim.
"""
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from mdistiller_ext.runs import worklog

from .conftest import ROOT, SHARED, write_cifar10_jpeg_tar, write_cifar100_python

pytestmark = [pytest.mark.host, pytest.mark.slow]

SHIM = '''# test-only stand-ins: CPU for the host's unconditional .cuda(), and the test's tiny CIFAR-100 files
import torch
import torchvision.datasets.cifar as cifar
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
cifar.check_integrity = lambda *a, **k: True
'''


@pytest.fixture
def cpu_cuda(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.nn.Module, "cuda", lambda self, *a, **k: self)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("host_data")
    write_cifar100_python(root, n_train=2, n_test=1)
    torch.manual_seed(0)
    from mdistiller_ext.host import adapter as host

    torch.save({"model": host.cifar_model_dict["resnet20"][0](num_classes=100).state_dict()}, root / "teacher.pth")
    return root


def host_cfg(data: Path, out: Path, method: str, extra=()):
    from mdistiller_ext.runs.naming import load_config

    src = {"dhkd": "cifar100/dhkd/res56_res20.yaml", "aekt": "cifar100/aekt/res56_res20.yaml",
           "vanilla": "cifar100/vanilla/resnet56.yaml"}[method]
    opts = ["DISTILLER.TEACHER", "resnet20", "DISTILLER.STUDENT", "resnet8", "SOLVER.EPOCHS", "2",
            "SOLVER.BATCH_SIZE", "64", "DATASET.NUM_WORKERS", "0", "LOG.PREFIX", str(out), "EXT.DATA_ROOT", str(data),
            "EXT.DOWNLOAD", "False", "EXT.TEACHER_CKPT", str(data / "teacher.pth"), "EXT.EXPORT_TEACHER", "False",
            "EXT.TEACHER_MIN_ACC", "0",
            *extra]
    return load_config(str(ROOT / "configs" / src), opts), list(extra)  # the run is named by ``extra`` only


def train_through_host(cfg, opts):
    """train_cli's host route (mdistiller's trainer_dict[SOLVER.TRAINER]) on this machine's CPU."""
    from mdistiller_ext.builders import build_distiller
    from mdistiller_ext.data.loaders import get_dataset
    from mdistiller_ext.host.route import train_with_host
    from mdistiller_ext.runs.naming import experiment_name

    g = torch.Generator().manual_seed(0)
    train_loader, val_loader, n, classes = get_dataset(cfg, g, None)
    distiller, student = build_distiller(cfg, classes, n)
    name = experiment_name(cfg, opts)
    before = {k: v.clone() for k, v in distiller.state_dict().items()}
    captured = {}
    from mdistiller_ext.host import registration

    base = registration.host_trainers()[cfg.SOLVER.TRAINER]
    real_init = base.__init__

    def spy(self, *a, **k):  # keep the trainer the host builds, to look at its optimizer
        real_init(self, *a, **k)
        captured["trainer"] = self

    base.__init__ = spy
    try:
        best = train_with_host(cfg, name, distiller, train_loader, val_loader, resume=False)
    finally:
        base.__init__ = real_init
    return distiller, before, captured["trainer"], Path(cfg.LOG.PREFIX) / name, best


def optimizer_ids(trainer):
    return {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}


HOST_FILES = {"worklog.txt", "train.events", "latest", "student_latest", "best", "student_best", "runtime.json"}


@pytest.mark.parametrize("method,trainer", [("dhkd", "base"), ("aekt", "base"), ("vanilla", "base"), ("dhkd", "align")])
def test_host_trainers_train_our_distillers(cpu_cuda, data, tmp_path, method, trainer):
    cfg, opts = host_cfg(data, tmp_path / "out", method, ["SOLVER.TRAINER", trainer])
    distiller, before, host_trainer, run, best = train_through_host(cfg, opts)
    assert type(host_trainer).__module__.startswith("mdistiller") or trainer == "align"
    assert HOST_FILES <= set(os.listdir(run))
    log = worklog.read(run / "worklog.txt")
    assert log.finished and sorted(log.epochs) == [1, 2] and log.best_acc == pytest.approx(best, abs=0.01)
    after = distiller.state_dict()
    ids = optimizer_ids(host_trainer)
    extra = {"dhkd": "aux_head", "aekt": "serial"}.get(method)
    if extra:
        module = getattr(distiller, extra)
        assert {id(p) for p in module.parameters()} <= ids  # in the optimizer the host builds
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(extra + ".")), f"{extra} did not train"
    if method != "vanilla":
        teacher = [k for k in before if k.startswith("teacher.")]
        assert teacher and all(torch.equal(before[k], after[k]) for k in teacher)
        assert not ids & {id(p) for p in distiller.teacher.parameters()}
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("student.") and "num_batches" not in k)
    info = yaml.safe_load((run / "runtime.json").read_text())
    assert info["route"].startswith("mdistiller ") and info["zoo"] == "host (mdistiller)"
    assert (run / "worklog.txt").read_text().startswith("# runtime: route=mdistiller")


def vendored_host(tmp_path: Path) -> Path:
    archive = next((SHARED / "vendor").glob("mdistiller-*.tar.gz"), None)
    if archive is None:
        # the host's own scripts (tools/eval.py) are not in its installed package: they come from the vendored
        # source archive, which a user who installed mdistiller from GitHub does not have
        pytest.skip(f"no mdistiller source archive in {SHARED / 'vendor'} (this test runs the host's own tools/eval.py; "
                    "set MDX_SHARED to a folder holding vendor/mdistiller-*.tar.gz to run it)")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "mdistiller"


def host_eval(src: Path, shim: Path, model: str, ckpt: Path) -> float:
    env = dict(os.environ, PYTHONPATH=f"{shim}{os.pathsep}{src}")
    r = subprocess.run([sys.executable, "tools/eval.py", "-m", model, "-c", str(ckpt), "-d", "cifar100"], cwd=src,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return float(re.findall(r"Top-1:([\d.]+)", r.stdout + r.stderr)[-1])


def test_hosts_eval_script_reads_our_student_checkpoints(cpu_cuda, data, tmp_path):
    cfg, opts = host_cfg(data, tmp_path / "out", "dhkd")
    _, _, _, run, best = train_through_host(cfg, opts)
    src = vendored_host(tmp_path / "src")
    # the host's script reads CIFAR-100 from <its repository>/data
    (src / "data").mkdir(exist_ok=True)
    os.symlink(data / "cifar-100-python", src / "data" / "cifar-100-python")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    log = worklog.read(run / "worklog.txt")
    assert host_eval(src, shim, "resnet8", run / "student_best") == pytest.approx(log.best_acc, abs=0.01)
    assert host_eval(src, shim, "resnet8", run / "student_latest") == pytest.approx(log.epochs[2]["test_acc"], abs=0.01)


def test_readme_quickstart_with_mdistiller_installed(tmp_path):
    """The README's two quickstart commands, mdistiller importable (no MDISTILLER_EXT_STANDALONE)."""
    (tmp_path / "data").mkdir()
    write_cifar10_jpeg_tar(tmp_path / "data" / "cifar10-jpeg.tar.gz", n_train=6, n_test=3)
    env = {k: v for k, v in os.environ.items() if k != "MDISTILLER_EXT_STANDALONE"}
    env["PYTHONUNBUFFERED"] = "1"
    # a teacher of one epoch on 40 images need not beat chance clearly: accepted explicitly
    small = ["SOLVER.EPOCHS", "1", "EXT.TRAIN_SUBSET", "40", "EXT.PROGRESS", "False", "EXT.TEACHER_MIN_ACC", "0"]
    for cfg in ("configs/cifar10/vanilla/resnet20.yaml", "configs/cifar10/dhkd/res20_res8.yaml"):
        r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--cfg", str(ROOT / cfg), *small], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "best accuracy" in r.stdout
    runs = sorted((tmp_path / "output").glob("*/*/runtime.json"))
    assert len(runs) == 2
    for path in runs:
        info = yaml.safe_load(path.read_text())
        assert info["zoo"] == "host (mdistiller)" and info["mdistiller"] != "not installed"


def test_the_same_seed_gives_the_same_numbers_with_and_without_mdistiller(tmp_path):
    """This engine with mdistiller's model zoo and with the stand-in zoo: identical worklogs (the runtime
    records still differ in `zoo`, so the comparison keeps such runs apart unless told to pool them)."""
    (tmp_path / "data").mkdir()
    write_cifar10_jpeg_tar(tmp_path / "data" / "cifar10-jpeg.tar.gz", n_train=8, n_test=3)
    logs = {}
    for mode in ("host", "standalone"):
        env = {k: v for k, v in os.environ.items() if k != "MDISTILLER_EXT_STANDALONE"}
        if mode == "standalone":
            env["MDISTILLER_EXT_STANDALONE"] = "1"
        r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--cfg", str(ROOT / "configs/cifar10/vanilla/resnet20.yaml"),
                            "SOLVER.EPOCHS", "2", "EXT.TRAIN_SUBSET", "80", "EXT.PROGRESS", "False", "EXT.EXPORT_TEACHER",
                            "False", "LOG.PREFIX", f"out_{mode}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        run, = (tmp_path / f"out_{mode}").glob("*/*/worklog.txt")
        logs[mode] = [line for line in run.read_text().splitlines() if not line.startswith("# runtime")]
        zoo = yaml.safe_load((run.parent / "runtime.json").read_text())["zoo"]
        assert zoo == ("host (mdistiller)" if mode == "host" else "standalone")
    assert logs["host"] == logs["standalone"] and any("test_acc" in line for line in logs["host"])

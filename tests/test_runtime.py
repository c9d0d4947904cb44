"""runtime.resolve: one answer to what every ``auto`` becomes, on machines a CPU can describe (a fake
Machine stands for GPUs), and the CUDA-facing defects it fixes, wherever a CPU can show them."""
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mdistiller_ext.host import registration
from mdistiller_ext.errors import UserError
from mdistiller_ext.data.device import DeviceCifarLoader
from mdistiller_ext.engine.runtime import Machine, host_refusals, resolve, resolve_amp, resolve_device

from .conftest import ROOT

H100, V100 = (9, 0), (7, 0)


def cfg_with(**ext):
    cfg = registration.base_cfg()
    cfg.DATASET.TYPE = "cifar100"
    cfg.DISTILLER.TYPE = "DHKD"
    for k, v in ext.items():
        cfg.EXT[k] = v
    return cfg


def test_device_with_and_without_an_index():
    two = Machine((H100, H100))
    assert resolve_device("cuda", two) == torch.device("cuda", 0)  # no index: a real index, never bare "cuda"
    assert resolve_device("cuda", two, local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_device("auto", two, local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_device("cuda:1", two) == torch.device("cuda", 1)
    # each torchrun process sees its own single GPU (CUDA_VISIBLE_DEVICES): that is cuda:0 for all of them
    assert resolve_device("auto", Machine((H100,)), local_rank=3, world_size=4) == torch.device("cuda", 0)
    assert resolve_device("auto", Machine()) == torch.device("cpu")
    assert resolve_device("cpu", two) == torch.device("cpu")
    with pytest.raises(UserError, match="2 GPUs are visible; use cuda:0 to cuda:1"):
        resolve_device("cuda:2", two)
    with pytest.raises(UserError, match="every torchrun process on one GPU"):
        resolve_device("cuda:1", two, world_size=2)
    with pytest.raises(UserError, match="process 2 of this node has no GPU"):
        resolve_device("auto", two, local_rank=2, world_size=3)
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda", Machine())


def test_amp_auto_takes_bf16_only_where_it_is_native():
    assert resolve_amp("auto", torch.device("cuda", 0), Machine((H100,))) is torch.bfloat16
    assert resolve_amp("auto", torch.device("cuda", 0), Machine(((8, 0),))) is torch.bfloat16
    assert resolve_amp("auto", torch.device("cuda", 0), Machine((V100,))) is None  # emulated bf16: fp32
    assert resolve_amp("auto", torch.device("cuda", 1), Machine((H100, V100))) is None
    assert resolve_amp("auto", torch.device("cpu"), Machine()) is None
    assert resolve_amp("fp16", torch.device("cuda", 0), Machine((V100,))) is torch.float16
    assert resolve_amp("bf16", torch.device("cpu"), Machine()) is torch.bfloat16


def test_one_config_one_route_with_or_without_mdistiller():
    gpu_with_host, gpu_without = Machine((H100,), True), Machine((H100,), False)
    a, b = resolve(cfg_with(), gpu_with_host), resolve(cfg_with(), gpu_without)
    assert a == b and a.route == "ext" and a.amp is torch.bfloat16 and a.channels_last and a.fast_data
    assert "runtime: this engine" in a.line() and "bf16" in a.line()
    cpu = resolve(cfg_with(), Machine())
    # channels-last on the CPU too: the quickstart's models step in 0.75x and 0.59x the contiguous time there
    assert (cpu.device, cpu.amp, cpu.channels_last) == (torch.device("cpu"), None, True)


def test_the_host_route_refuses_what_it_cannot_honour_and_says_what_is_missing():
    cfg = cfg_with(ENGINE="host")
    rt = resolve(cfg, Machine((H100,), True))
    assert rt.route == "host" and rt.amp is None and not rt.fast_data
    for key, value in (("AMP", "bf16"), ("COMPILE", True), ("NONFINITE", "skip"), ("DETERMINISTIC", True),
                       ("GRAD_PROBE_EVERY", 10), ("TEACHER_CACHE", "on"), ("CHANNELS_LAST", "on")):
        cfg = cfg_with(ENGINE="host", **{key: value})
        assert f"EXT.{key}" in host_refusals(cfg)
        with pytest.raises(UserError, match=f"config EXT.{key} = .* set EXT.ENGINE ext"):
            resolve(cfg, Machine((H100,), True))
    with pytest.raises(UserError, match="mdistiller is not installed; use EXT.ENGINE ext"):
        resolve(cfg_with(ENGINE="host"), Machine((H100,), False))
    # this project's keys in mdistiller's own nodes: its classes ignore them, so its route refuses them
    for node in ("KD", "DKD"):
        cfg = cfg_with(ENGINE="host")
        cfg.defrost()
        cfg[node].LOGIT_STAND = True
        assert host_refusals(cfg).startswith(f"config {node}.LOGIT_STAND = True cannot be honoured by mdistiller's trainers")
    with pytest.raises(UserError, match="no CUDA device; use EXT.ENGINE ext"):
        resolve(cfg_with(ENGINE="host"), Machine((), True))
    with pytest.raises(UserError, match="mdistiller is not installed and no CUDA device"):
        resolve(cfg_with(ENGINE="host"), Machine())
    with pytest.raises(UserError, match="torchrun"):
        resolve(cfg_with(ENGINE="host"), Machine((H100, H100), True), world_size=2)


def test_sync_bn_is_refused_where_torch_cannot_run_it():
    with pytest.raises(UserError, match="EXT.SYNC_BN needs CUDA"):
        resolve(cfg_with(SYNC_BN=True), Machine())
    assert resolve(cfg_with(SYNC_BN=True), Machine((H100, H100)), world_size=2).device == torch.device("cuda", 0)


def test_auto_takes_mdistillers_trainers_only_for_a_method_only_they_run(monkeypatch):
    from mdistiller_ext import registry

    cfg = cfg_with()
    cfg.DISTILLER.TYPE = "CRD"  # this engine's CRD since issue 28: auto trains it here, on any device
    assert resolve(cfg, Machine((H100,), True)).route == "ext" and resolve(cfg, Machine()).route == "ext"
    # a registered method without a class of this project's that needs mdistiller's loaders runs only there
    only_host = registry.Method("ONLYHOST", None, slug="onlyhost", host_provides=True, host_data=True)
    monkeypatch.setitem(registry._METHODS, "ONLYHOST", only_host)
    cfg.DISTILLER.TYPE = "ONLYHOST"
    assert resolve(cfg, Machine((H100,), True)).route == "host"
    with pytest.raises(UserError, match="ONLYHOST runs only through mdistiller's own trainer"):
        resolve(cfg, Machine())


@pytest.mark.parametrize("on", [False, True])
def test_train_and_eval_batches_have_the_layout_asked_for(on):
    x = np.random.RandomState(0).randint(0, 256, (20, 32, 32, 3)).astype(np.uint8)
    y = np.arange(20) % 10
    fmt = torch.channels_last if on else torch.contiguous_format
    for train in (True, False):
        loader = DeviceCifarLoader(x, y, 8, (0.5,) * 3, (0.25,) * 3, torch.device("cpu"), train, channels_last=on)
        for batch in loader:
            assert batch[0].is_contiguous(memory_format=fmt), (train, batch[0].stride())


def test_torch_floor_covers_the_apis_used():
    # torch.amp.GradScaler (in annotations and the engine) needs 2.3; Module.compile 2.2
    floors = [re.search(r"torch>=([\d.]+)", (ROOT / f).read_text()).group(1) for f in ("requirements.txt", "pyproject.toml")]
    assert floors[0] == floors[1] and tuple(int(p) for p in floors[0].split(".")) >= (2, 3)
    assert "torch.amp.GradScaler" in (ROOT / "mdistiller_ext/engine/step.py").read_text()


def test_a_busy_machine_is_said_when_torch_would_use_several_threads():
    from mdistiller_ext.engine.runtime import busy_machine_warning

    assert busy_machine_warning(1, cores=2, load=4.0) is None  # one thread: nothing to oversubscribe
    assert busy_machine_warning(2, cores=2, load=0.2) is None  # idle: torch's default is the fastest
    line = busy_machine_warning(2, cores=2, load=2.0)
    assert line.startswith("warning: this machine is busy (load 2.0 on 2 cores)") and "EXT.THREADS 1" in line
    assert len(line.splitlines()) == 1
    assert busy_machine_warning(4, cores=16, load=3.0) is None  # plenty of free cores


def test_passive_waits_already_set_are_not_recommended_again(monkeypatch):
    from mdistiller_ext.engine.runtime import busy_machine_warning

    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    line = busy_machine_warning(2, cores=2, load=2.0)
    assert line.startswith("note: this machine is busy") and "OMP_WAIT_POLICY=PASSIVE in the environment" not in line
    assert "EXT.THREADS 1" in line and len(line.splitlines()) == 1


def test_the_scripts_set_passive_waits_on_a_busy_machine_only(monkeypatch):
    """tools/train.py and tools/eval.py call this before torch loads (OpenMP reads the policy then)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("passive_waits", ROOT / "tools" / "passive_waits.py")
    pw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pw)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(pw.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(pw.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert pw.passive_if_busy() is False and "OMP_WAIT_POLICY" not in os.environ  # a quiet machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(pw.os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert pw.passive_if_busy() is False  # one thread: nothing waits
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert pw.passive_if_busy() is True and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert pw.passive_if_busy() is False and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice stands
    for script in ("train.py", "eval.py"):  # before the package (and torch) is imported
        text = (ROOT / "tools" / script).read_text()
        assert text.index("passive_if_busy()") < text.index("from mdistiller_ext")


def test_the_recorded_commit_is_the_packages_and_says_dirty_for_a_changed_file(tmp_path):
    import shutil
    import subprocess
    import sys

    from .conftest import ROOT

    shutil.copytree(ROOT / "mdistiller_ext", tmp_path / "mdistiller_ext", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "mdistiller_ext"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    code = "from mdistiller_ext.runs.provenance import git_commit; print(git_commit())"

    def commit() -> str:
        r = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(tmp_path)})
        assert r.returncode == 0, r.stderr[-1500:]
        return r.stdout.strip()

    sha = subprocess.run(git + ["rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert commit() == sha
    with open(tmp_path / "mdistiller_ext" / "runs" / "worklog.py", "a") as f:
        f.write("\n# changed\n")
    assert commit() == sha + "+dirty"


@pytest.mark.slow
def test_the_passive_wait_policy_keeps_the_numbers_and_one_thread_does_not():
    """What the busy-machine line promises: OMP_WAIT_POLICY=PASSIVE trains bitwise alike, a different
    thread count does not (the sums run in another order)."""
    import subprocess
    import sys

    from .conftest import ROOT

    code = ("import sys, torch; sys.path.insert(0, 'benchmarks'); from cpu_options import build; "
            "from mdistiller_ext.engine.step import train_step; torch.manual_seed(0); "
            "d, setup, opt = build('KD', 'res20_res8', 'cifar10', False, False); g = torch.Generator().manual_seed(1); "
            "x = torch.randn(64, 3, 32, 32, generator=g); y = torch.randint(0, 10, (64,), generator=g)\n"
            "for _ in range(3): train_step(d, opt, x, y, 30, setup)\n"
            "print(sum(float(p.detach().double().sum()) for p in d.student.parameters()).hex())")

    def weights(**env) -> str:
        base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, "OMP_NUM_THREADS": "2", **env},
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-1500:]
        return r.stdout.strip()

    default = weights()
    assert weights(OMP_WAIT_POLICY="PASSIVE") == default
    assert weights(OMP_NUM_THREADS="1") != default


def test_precision_names_tf32_on_cuda_fp32(monkeypatch):
    """fp32 on a CUDA device where torch allows TF32 is another arithmetic (the teacher-logit cache's key
    carries it); the CPU's fp32 and autocast precisions are named as they are."""
    import torch

    from mdistiller_ext.engine.runtime import Runtime

    def rt(device, amp=None):
        return Runtime("ext", "test", torch.device(device), amp, False, True, False)

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert rt("cuda").precision() == "fp32 (TF32 allowed)"
    assert rt("cpu").precision() == "fp32" and rt("cuda", torch.bfloat16).precision() == "bf16"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert rt("cuda").precision() == "fp32"

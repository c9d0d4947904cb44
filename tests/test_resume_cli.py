"""The command line around runs: flags anywhere, --resume [RUN_DIR], extending a run, refused resumes
that change nothing, Ctrl-C, full disks, refused pickles and file permissions."""
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from mdistiller_ext.runs import worklog
from mdistiller_ext.runs.checkpoint import load_safe, save_atomic
from mdistiller_ext.errors import UserError

from .conftest import ROOT
from .test_resilience import ENV, cmd, make_work, write_cfg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_work(tmp_path_factory.mktemp("resume_cli"))


def train(work, *args, timeout=300):
    """tools/train.py with these words as typed (the first one a config file unless it is a flag or key)."""
    words = list(args) if args[0].startswith("-") or args[0].isupper() else ["--cfg", *args]
    return subprocess.run([sys.executable, str(ROOT / "tools/train.py"), *words], cwd=work, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_flags_after_overrides_and_extending_a_run_by_override(work):
    cfg = write_cfg(work, "extend", SOLVER__EPOCHS=1)
    assert train(work, cfg).returncode == 0
    run = work / "out/cifar10_dhkd/extend"
    # flags typed last, after the overrides; the run is found although SOLVER.EPOCHS is not in its name
    r = train(work, cfg, "SOLVER.EPOCHS", "2", "--resume")
    assert r.returncode == 0, r.stderr
    assert sorted(worklog.read(run / "worklog.txt").epochs) == [1, 2]
    assert "EPOCHS: 2" in (run / "config.yaml").read_text()  # the directory describes the extended run
    assert not (work / "out/cifar10_dhkd/extend,SOLVER.EPOCHS:2").exists()
    # the run directory given explicitly, its own config.yaml, one more epoch
    r = train(work, "--resume", str(run), "SOLVER.EPOCHS", "3")
    assert r.returncode == 0, r.stderr
    assert sorted(worklog.read(run / "worklog.txt").epochs) == [1, 2, 3]
    assert "(resumed after epoch 2)" in (run / "worklog.txt").read_text()
    r = train(work, "SOLVER.EPOCHS", "1", "--cfg", cfg, "--overwrite")
    assert r.returncode == 0, r.stderr


def test_resume_refuses_another_teacher_file(work):
    """The teacher lookup can find another file on resume (a ckpt_epoch_240.pth appears, or EXT.TEACHER_CKPT
    changes): refused in one line naming both files, unless --force-resume; nothing is written."""
    from mdistiller_ext.host.standalone.models import cifar_model_dict

    cfg = write_cfg(work, "teacher_swap", SOLVER__EPOCHS=1)
    assert train(work, cfg).returncode == 0
    run = work / "out/cifar10_dhkd/teacher_swap"
    other = work / "other_teacher.pth"
    torch.manual_seed(1)
    torch.save({"model": cifar_model_dict["resnet8"][0](num_classes=10).state_dict()}, other)
    before = (run / "worklog.txt").read_text()
    r = train(work, cfg, "SOLVER.EPOCHS", "2", "EXT.TEACHER_CKPT", str(other), "--resume", str(run))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "is not the one this run started with" in r.stderr and "--force-resume" in r.stderr
    assert "ckpt_epoch_240.pth" in r.stderr and "other_teacher.pth" in r.stderr
    assert (run / "worklog.txt").read_text() == before
    r = train(work, cfg, "SOLVER.EPOCHS", "2", "EXT.TEACHER_CKPT", str(other), "--resume", str(run), "--force-resume")
    assert r.returncode == 0, r.stderr
    assert sorted(worklog.read(run / "worklog.txt").epochs) == [1, 2]


def test_resume_without_a_run_is_one_line(work):
    cfg = write_cfg(work, "never", SOLVER__EPOCHS=1)
    for args in ((cfg, "--resume"), ("--resume", "out/nowhere")):
        r = train(work, *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "--resume" in r.stderr and "Traceback" not in r.stderr


def test_refused_resume_changes_nothing_on_disk(work):
    cfg = write_cfg(work, "refused", SOLVER__EPOCHS=1)
    assert train(work, cfg).returncode == 0
    run = work / "out/cifar10_dhkd/refused"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    write_cfg(work, "refused", SOLVER__EPOCHS=2, DHKD__T=3.0)
    r = train(work, cfg, "--resume")
    assert r.returncode == 2 and "DHKD.T: 2.0 -> 3.0" in r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def _interrupt(work, cfg, when):
    env = dict(ENV, PYTHONFAULTHANDLER="1")
    # a shell's background job (a CI runner, nohup ... &) passes SIGINT on as ignored, and Python then
    # never raises KeyboardInterrupt: give the run the disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen(cmd(cfg), cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not when() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread on SIGABRT
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"no exit within 180 s of Ctrl-C; threads:\n{err[-4000:]}")
    return proc.returncode, err


def test_ctrl_c_says_what_is_true(work):
    cfg = write_cfg(work, "ctrlc", SOLVER__EPOCHS=200)
    run = work / "out/cifar10_dhkd/ctrlc"
    code, err = _interrupt(work, cfg, lambda: (run / "runtime.json").exists())
    assert code == 130 and "before the first epoch finished" in err and "--overwrite" in err, err
    cfg = write_cfg(work, "ctrlc2", SOLVER__EPOCHS=200)
    latest = work / "out/cifar10_dhkd/ctrlc2/latest"  # epoch 1's checkpoint (written after its worklog block)
    code, err = _interrupt(work, cfg, lambda: latest.exists())
    assert code == 130 and " saved in " in err and "--resume out/cifar10_dhkd/ctrlc2" in err, err
    assert "epochs 1-1" not in err


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest"
    save_atomic({"epoch": 1}, str(path))
    before = path.read_bytes()

    def full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4352 vs 4288")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="is the disk full.*is unchanged.*--resume"):
        save_atomic({"epoch": 2}, str(path))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["latest"]


def test_checkpoints_keep_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_atomic({"x": torch.zeros(1)}, str(tmp_path / "ckpt"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "ckpt").st_mode) == 0o644


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo never",))


def test_refused_pickles_name_what_was_refused(tmp_path):
    torch.save({"model": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match=r"holds posix\.system, which is code"):
        load_safe(str(tmp_path / "evil.pth"))
    (tmp_path / "noise.pth").write_bytes(os.urandom(2000))
    with pytest.raises(UserError) as e:
        load_safe(str(tmp_path / "noise.pth"))
    assert "PyTorch 2.6" not in str(e.value) and "noise.pth" in str(e.value)


def test_help_lists_flags_order_and_ext_keys():
    r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "Flags may come anywhere" in r.stdout and "EXT.GRAD_PROBE_EVERY=0" in r.stdout and "DHKD.T=2.0" in r.stdout


def test_help_lists_every_registered_node_including_a_plugins():
    # the help is built from the registry: a --plugin's node is listed with its defaults
    plugin = str(ROOT / "tests" / "test_one_file_method.py")
    r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--plugin", plugin, "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "LOGITMSE.WEIGHT=0.05" in r.stdout and "DHKD.T=2.0" in r.stdout and "AEKT.SERIAL='cls_then_kd'" in r.stdout

def test_ctrl_c_while_checkpoints_are_written_lands_after_them():
    import signal
    import time

    from mdistiller_ext.atomic import interrupts_deferred

    # A suite started in the background by a non-interactive shell inherits SIGINT ignored (then a
    # deferred Ctrl-C is rightly dropped): this test starts from Python's own handler, as a terminal does.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    written = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)  # a SIGINT arriving now waits ...
                written.append("checkpoint")
            time.sleep(1.0)  # ... and is delivered once the block is done
    finally:
        signal.signal(signal.SIGINT, before)
    assert written == ["checkpoint"]


def test_a_deferred_ctrl_c_stays_ignored_where_sigint_was_ignored():
    import signal
    import time

    from mdistiller_ext.atomic import interrupts_deferred

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        time.sleep(0.2)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("pad", range(0, 40, 3))
def test_resume_finds_a_long_named_run_wherever_its_name_was_cut(tmp_path, pad):
    """A run name over 200 bytes keeps its head and a digest of the whole name, which covers the overrides
    that only extend a run (SOLVER.EPOCHS): --resume without a directory finds the run by its saved config,
    whatever part of which KEY:VALUE the cut fell in (the padding moves the cut across the keys)."""
    from mdistiller_ext.cli.train_args import parse_args
    from mdistiller_ext.config import write_config
    from mdistiller_ext.runs.directory import resolve_run
    from mdistiller_ext.runs.naming import experiment_name, load_config

    cfg_file = str(ROOT / "configs/cifar10/kd/res20_res8.yaml")
    teacher = "/a/teacher/path/" + "t" * (60 + pad) + ".pth"
    opts = ["EXT.TRAIN_SUBSET", "256", "EXT.TEACHER_CKPT", teacher, "LOG.PREFIX", str(tmp_path / "out"),
            "EXT.DATA_ROOT", "/some/data/root", "EXT.DATA_CACHE", "/some/cache", "EXT.PROGRESS", "False"]
    first = load_config(cfg_file, opts + ["SOLVER.EPOCHS", "1"])
    name = experiment_name(first, opts + ["SOLVER.EPOCHS", "1"])
    assert "...#" in name
    run = tmp_path / "out" / name
    run.mkdir(parents=True)
    write_config(str(run), first)
    (run / "latest").write_bytes(b"")
    # a run of another config under the same tag is not taken for it
    other = load_config(cfg_file, opts + ["SOLVER.EPOCHS", "1", "EXT.TRAIN_SUBSET", "128"])
    other_dir = tmp_path / "out" / experiment_name(other, opts + ["SOLVER.EPOCHS", "1", "EXT.TRAIN_SUBSET", "128"])
    other_dir.mkdir()
    write_config(str(other_dir), other)
    (other_dir / "latest").write_bytes(b"")
    cfg, found = resolve_run(parse_args(["--cfg", cfg_file, *opts, "SOLVER.EPOCHS", "2", "--resume"]))
    assert found == name and cfg.SOLVER.EPOCHS == 2


def test_a_key_added_after_a_run_started_counts_at_its_default():
    """A run started before a key existed (its saved config lacks it) resumes: the key counts at its default;
    a value other than the default is still a difference."""
    from yacs.config import CfgNode

    from mdistiller_ext.runs.naming import load_config
    from mdistiller_ext.runs.pooling import config_differences

    current = load_config(str(ROOT / "configs/cifar10/kd/res20_res8.yaml"), [])
    older = CfgNode.load_cfg(current.dump())
    older.defrost()
    del older.EXT["TEACHER_MIN_ACC"]
    assert config_differences(older, current) == []
    changed = load_config(str(ROOT / "configs/cifar10/kd/res20_res8.yaml"), ["EXT.TEACHER_MIN_ACC", "50.0"])
    assert config_differences(older, changed) == ["EXT.TEACHER_MIN_ACC: -1.0 -> 50.0"]

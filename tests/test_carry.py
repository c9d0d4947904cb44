"""runs/carry.py: a long run's checkpoint carried without the teacher's weights, restored equal, resumed exactly."""
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mdistiller_ext.errors import UserError
from mdistiller_ext.runs import carry, worklog

from .conftest import ROOT
from .test_resilience import ENV, cmd, make_work, write_cfg


def fake_run(root, rel="long/dhkd,seed0", epoch=3, finished=False):
    """A run directory under ``root`` as the engine leaves it: a teacher file named in runtime.json (relative to
    the current directory, as a run records it), and a latest whose teacher.* entries are that file's weights."""
    gen = torch.Generator().manual_seed(0)
    teacher = {"conv.weight": torch.randn(4, 3, generator=gen), "bn.running_mean": torch.randn(4, generator=gen),
               "bn.num_batches_tracked": torch.tensor(7)}
    tfile = Path("teachers") / "t.pth"
    tfile.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": teacher}, tfile)
    gen.manual_seed(epoch)
    sha = hashlib.sha256(tfile.read_bytes()).hexdigest()
    run = root / rel
    run.mkdir(parents=True, exist_ok=True)
    (run / "runtime.json").write_text(json.dumps({"teacher": {"path": "teachers/t.pth", "sha256": sha}}))
    (run / "worklog.txt").write_text("".join(f"-------------------------\nepoch: {e}\ntest_acc: 50.0\n"
                                             for e in range(1, epoch + 1)) + ("best_acc\t50.00\n" if finished else ""))
    (run / "config.yaml").write_text("SOLVER:\n  EPOCHS: 240\n")
    model = {"student.w": torch.randn(5, 4, generator=gen)}
    model.update({f"teacher.{k}": v.clone() for k, v in teacher.items()})
    model["aux_head.net.weight"] = torch.randn(2, 5, generator=gen)
    state = {"epoch": epoch, "model": model, "best_acc": 41.5, "config": "SOLVER:\n  EPOCHS: 240\n",
             "optimizer": {"state": {0: {"momentum_buffer": torch.randn(5, 4, generator=gen)}},
                           "param_groups": [{"lr": 0.05, "params": [0]}]}}
    torch.save(state, run / "latest")
    return run, state


def assert_same(a, b):
    assert list(a) == list(b) and list(a["model"]) == list(b["model"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["optimizer"]["state"][0]["momentum_buffer"], b["optimizer"]["state"][0]["momentum_buffer"])
    assert {k: v for k, v in a.items() if k not in ("model", "optimizer")} == \
           {k: v for k, v in b.items() if k not in ("model", "optimizer")}


def test_pack_leaves_the_teacher_out_and_restore_gives_the_same_checkpoint_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, state = fake_run(tmp_path)
    assert carry.pack(str(run), str(tmp_path / "c")) == 3
    carried = torch.load(tmp_path / "c", weights_only=True)
    assert not any(k.startswith("teacher.") for k in carried["model"]) and "student.w" in carried["model"]
    assert carried["carry"]["teacher"]["path"] == "teachers/t.pth"
    assert carry.restore(str(tmp_path / "c"), str(tmp_path / "back")) == 3
    assert_same(state, torch.load(tmp_path / "back", weights_only=True))


def test_pack_refuses_a_checkpoint_whose_teacher_is_not_the_named_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, state = fake_run(tmp_path)
    state["model"]["teacher.conv.weight"] += 1e-6  # a teacher that trained, or another file: restore could not rebuild it
    torch.save(state, run / "latest")
    with pytest.raises(UserError, match="teacher weights are not teachers/t.pth's.*teacher.conv.weight"):
        carry.pack(str(run), str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_restore_refuses_another_teacher_file_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, _ = fake_run(tmp_path)
    carry.pack(str(run), str(tmp_path / "c"))
    torch.save({"model": {"conv.weight": torch.zeros(4, 3)}}, tmp_path / "teachers" / "t.pth")
    with pytest.raises(UserError, match="not the one the run learned from"):
        carry.restore(str(tmp_path / "c"), str(tmp_path / "back"))
    assert not (tmp_path / "back").exists()


def test_pack_all_and_restore_all_as_the_cpu_queue_calls_them(tmp_path, monkeypatch, capsys):
    """sync packs each unfinished run once per epoch and drops a finished run's carried file; run restores into a
    fresh folder with the run's records, and never over a checkpoint of the same or a later epoch."""
    monkeypatch.chdir(tmp_path)
    work, checkout, fresh = tmp_path / "worktree", tmp_path / "checkout", tmp_path / "fresh"
    run, state = fake_run(work, epoch=3)
    fake_run(work, rel="long/kd,seed0", epoch=240, finished=True)
    (checkout / "long/kd,seed0").mkdir(parents=True)
    (checkout / "long/kd,seed0" / carry.CARRY).write_bytes(b"carried while it ran")
    assert carry.main(["pack", str(work), str(checkout)]) == 0
    assert "long/dhkd,seed0: checkpoint of epoch 3 carried" in capsys.readouterr().out
    assert not (checkout / "long/kd,seed0" / carry.CARRY).exists()  # finished: its results are its worklog
    assert carry.pack_all(str(work), str(checkout)) == []  # the same epoch: not written again
    for name in ("worklog.txt", "runtime.json", "config.yaml"):  # what sync's copy puts beside it
        shutil.copy(run / name, checkout / "long/dhkd,seed0" / name)

    assert carry.main(["restore", str(checkout), str(fresh)]) == 0
    assert "long/dhkd,seed0: restored at epoch 3" in capsys.readouterr().out
    restored = fresh / "long/dhkd,seed0"
    assert_same(state, torch.load(restored / "latest", weights_only=True))
    assert (restored / "worklog.txt").read_text() == (run / "worklog.txt").read_text()
    assert sorted(p.name for p in restored.iterdir()) == ["config.yaml", "latest", "runtime.json", "worklog.txt"]
    # a worktree that went on past the carried epoch keeps its own
    later, _ = fake_run(fresh, epoch=4)
    assert carry.restore_all(str(checkout), str(fresh)) == []
    assert torch.load(later / "latest", weights_only=True)["epoch"] == 4


def test_a_refusal_is_one_line_and_exit_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run, _ = fake_run(tmp_path / "runs")
    (run / "runtime.json").write_text(json.dumps({"teacher": {"path": "gone.pth", "sha256": "ab" * 32}}))
    assert carry.main(["pack", str(tmp_path / "runs"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "teacher file gone.pth (from runtime.json) not found" in err[0]


@pytest.mark.slow
def test_a_run_restored_on_a_fresh_folder_resumes_to_the_uninterrupted_runs_weights(tmp_path):
    """The whole way: a run stopped in its second epoch (as a session's end stops it), only what git holds kept
    (its records and latest.carry), restored, resumed: the student's weights and the worklog equal a run that
    trained straight through."""
    (tmp_path / "w").mkdir()
    work = make_work(tmp_path / "w")
    straight = subprocess.run(cmd(write_cfg(work, "straight")), cwd=work, env=ENV, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    cfg = write_cfg(work, "carried")
    runs, checkout = work / "out", tmp_path / "checkout"
    run = runs / "cifar10_dhkd" / "carried"
    proc = subprocess.Popen(cmd(cfg), cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "latest").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    assert torch.load(run / "latest", weights_only=True)["epoch"] == 1, "the stop did not land in epoch 2"

    env = dict(ENV, PYTHONPATH=str(ROOT))  # as the CPU queue runs it: from a checkout, installed or not
    tool = [sys.executable, "-m", "mdistiller_ext.runs.carry"]
    packed = subprocess.run([*tool, "pack", str(runs), str(checkout)], cwd=work, env=env, capture_output=True, text=True)
    assert packed.returncode == 0 and "cifar10_dhkd/carried: checkpoint of epoch 1 carried" in packed.stdout, packed.stderr
    for name in carry.RECORDS:  # what the queue's sync copies beside it
        if (run / name).exists():
            shutil.copy(run / name, checkout / "cifar10_dhkd" / "carried" / name)
    shutil.rmtree(run)  # the fresh machine: nothing of the run but what was committed
    back = subprocess.run([*tool, "restore", str(checkout), str(runs)], cwd=work, env=env, capture_output=True, text=True)
    assert back.returncode == 0 and "restored at epoch 1" in back.stdout, back.stderr
    resumed = subprocess.run(cmd(cfg, "--resume"), cwd=work, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (torch.load(runs / "cifar10_dhkd" / n / "student_latest", weights_only=True)["model"]
            for n in ("straight", "carried"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = (worklog.read(str(runs / "cifar10_dhkd" / n / "worklog.txt")) for n in ("straight", "carried"))

    def numbers(log):  # the teacher cache's hit rate depends on what ran before
        return {e: {k: v for k, v in vals.items() if k != "teacher_cache_hit"} for e, vals in log.epochs.items()}

    assert numbers(la) == numbers(lb) and list(lb.epochs) == [1, 2, 3] and la.best_acc == lb.best_acc

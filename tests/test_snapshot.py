"""In-epoch snapshots (EXT.SNAPSHOT_MINUTES): a run stopped in the middle of an epoch and resumed from its
snapshot ends as the uninterrupted run does, bitwise: weights, optimizer, every worklog number (the epoch's
running loss and accuracy, AEKT's diagnostics, the probe's means), the probe's rows; and which checkpoint
a resume takes."""
import os

import pytest
import torch
import torch.nn.functional as F

from mdistiller_ext.engine import trainer as trainer_module
from mdistiller_ext.engine.distributed import DistInfo
from mdistiller_ext.errors import UserError
from mdistiller_ext.host import registration
from mdistiller_ext.methods.aekt import AEKT
from mdistiller_ext.methods.crd import CRD
from mdistiller_ext.runs import provenance, worklog
from mdistiller_ext.runs.checkpoint import SNAPSHOT, resumable

from .test_study_options import Recording, resnet8, trainer_for

EVERY_STEP = 1e-9  # minutes: a snapshot after every step but an epoch's last


class Noisy(Recording):
    """CE on the student's logits through dropout: every step draws from torch's global generator."""

    def forward_train(self, image, target, **kwargs):
        logits, _ = self.student(image)
        return logits, {"loss_ce": F.cross_entropy(F.dropout(logits, 0.3), target)}


def _noisy(cfg):
    return Noisy(resnet8(), resnet8(1), cfg)


def _aekt(cfg):
    return AEKT(resnet8(), resnet8(1).eval(), cfg)


def _crd(cfg):
    cfg.CRD.FEAT.STUDENT_DIM = cfg.CRD.FEAT.TEACHER_DIM = 64
    cfg.CRD.NCE.K = 7
    torch.manual_seed(0)
    return CRD(resnet8(), resnet8(1), cfg, 40)


def _cfg(method: str, minutes: float):
    cfg = registration.base_cfg()
    cfg.DISTILLER.TYPE = method
    cfg.SOLVER.EPOCHS = 3
    cfg.EXT.GRAD_PROBE_EVERY = 1 if method == "AEKT" else 0
    cfg.EXT.SNAPSHOT_MINUTES = minutes
    cfg.LOG.WANDB = False
    return cfg


class Stop(Exception):
    pass


def _train_until(trainer, monkeypatch, epoch: int, step: int) -> None:
    """Train until the given step of the given epoch, then stop as a kill would (before that step)."""
    real = trainer_module.train_step

    def step_or_stop(model, optimizer, image, target, e, setup, s, *args, **kwargs):
        if (e, s) == (epoch, step):
            raise Stop
        return real(model, optimizer, image, target, e, setup, s, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", step_or_stop)
    with pytest.raises(Stop):
        trainer.train()
    monkeypatch.undo()


def _straight(build, method: str, folder):
    """The uninterrupted run, without snapshots (taking them changes nothing)."""
    cfg = _cfg(method, 0.0)
    trainer = trainer_for(build(cfg), cfg, folder)
    trainer.train()
    return trainer


def _weights(trainer):
    return {**trainer.distiller.state_dict(), **{f"opt.{i}": v["momentum_buffer"]
                                                  for i, v in trainer.optimizer.state_dict()["state"].items()}}


@pytest.mark.parametrize("build,method", [(_noisy, "CE"), (_aekt, "AEKT"), (_crd, "CRD")])
def test_a_run_stopped_mid_epoch_resumes_from_its_snapshot_to_the_uninterrupted_runs_numbers(tmp_path, monkeypatch,
                                                                                              build, method):
    # 40 images in batches of 16: steps 0, 1, 2 an epoch; snapshots after steps 0 and 1
    straight = _straight(build, method, tmp_path / "straight")
    cfg = _cfg(method, EVERY_STEP)
    _train_until(trainer_for(build(cfg), cfg, tmp_path / "stopped"), monkeypatch, 2, 2)
    run = tmp_path / "stopped" / "run"
    held = torch.load(run / SNAPSHOT, weights_only=True)
    assert (held["epoch"], held["step"]) == (2, 2) and torch.load(run / "latest", weights_only=True)["epoch"] == 1

    cfg = _cfg(method, EVERY_STEP)
    resumed = trainer_for(build(cfg), cfg, tmp_path / "stopped")
    resumed.train(resume=True)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    la = worklog.read(str(tmp_path / "straight" / "run" / "worklog.txt"))
    lb = worklog.read(str(run / "worklog.txt"))
    assert la.epochs == lb.epochs and list(lb.epochs) == [1, 2, 3] and lb.finished
    if method == "AEKT":
        assert {"aekt_w_mean", "grad_cos"} <= set(lb.epochs[2])
        assert (tmp_path / "straight" / "run" / "grad_probe.csv").read_text() == (run / "grad_probe.csv").read_text()
    assert not (run / SNAPSHOT).exists()  # gone once its epoch finished
    text = (run / "worklog.txt").read_text()
    assert "(resumed after epoch 1 and 2 steps of epoch 2, from its snapshot)" in text
    assert provenance.read(str(run))["resumed"][-1]["after_step"] == 2


def test_a_snapshot_of_an_earlier_epoch_or_another_config_is_passed_over(tmp_path, monkeypatch, capsys):
    cfg = _cfg("CE", EVERY_STEP)
    _train_until(trainer_for(_noisy(cfg), cfg, tmp_path), monkeypatch, 2, 2)
    run = tmp_path / "run"
    snap = torch.load(run / SNAPSHOT, weights_only=True)

    # left beside a later `latest` (a crash between an epoch's checkpoint and the snapshot's removal)
    later = dict(torch.load(run / "latest", weights_only=True), epoch=2)
    torch.save(later, run / "latest")
    t = trainer_for(_noisy(_cfg("CE", EVERY_STEP)), _cfg("CE", EVERY_STEP), tmp_path)
    assert t._resume() == 2 and t._position is None

    # written under a config --force-resume accepts: its step counts other batches, the epoch starts over
    torch.save(dict(later, epoch=1), run / "latest")
    other = _cfg("CE", EVERY_STEP)
    other.SOLVER.BATCH_SIZE = 8
    t = trainer_for(_noisy(other), other, tmp_path, force_resume=True)
    assert t._resume() == 1 and t._position is None

    # unreadable: a note, and the last finished epoch
    (run / SNAPSHOT).write_bytes(b"not a checkpoint")
    t = trainer_for(_noisy(_cfg("CE", EVERY_STEP)), _cfg("CE", EVERY_STEP), tmp_path)
    assert t._resume() == 1 and t._position is None
    assert "resuming from the last finished epoch instead" in capsys.readouterr().err

    # the same config and the next epoch: taken, by one process
    torch.save(snap, run / SNAPSHOT)
    t = trainer_for(_noisy(_cfg("CE", EVERY_STEP)), _cfg("CE", EVERY_STEP), tmp_path)
    assert t._resume() == 1 and int(t._position["step"]) == 2
    # under torchrun (its random states and sums are one process's): passed over
    t = trainer_for(_noisy(_cfg("CE", EVERY_STEP)), _cfg("CE", EVERY_STEP), tmp_path)
    t.dist = DistInfo(0, 2, 0)
    assert t._resume() == 1 and t._position is None


def test_a_run_stopped_in_its_first_epoch_resumes_from_the_snapshot_alone(tmp_path, monkeypatch):
    straight = _straight(_noisy, "CE", tmp_path / "straight")
    cfg = _cfg("CE", EVERY_STEP)
    _train_until(trainer_for(_noisy(cfg), cfg, tmp_path / "stopped"), monkeypatch, 1, 1)
    run = tmp_path / "stopped" / "run"
    assert not (run / "latest").exists() and resumable(str(run))
    resumed = trainer_for(_noisy(_cfg("CE", EVERY_STEP)), _cfg("CE", EVERY_STEP), tmp_path / "stopped")
    resumed.train(resume=True)
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert worklog.read(str(run / "worklog.txt")).epochs == \
        worklog.read(str(tmp_path / "straight" / "run" / "worklog.txt")).epochs


def test_a_run_with_only_a_snapshot_is_resumed_by_the_sweep_and_overwrite_removes_it(tmp_path):
    from mdistiller_ext.cli.sweep import RunSpec, command, status
    from mdistiller_ext.runs.directory import start_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "worklog.txt").write_text("")
    spec = RunSpec("cifar100", "kd", "res56_res20", 0, "kd.yaml", [], str(run))
    assert status(spec) == "missing" and "--overwrite" in command(spec, "missing")
    (run / SNAPSHOT).write_bytes(b"epoch 1 in progress")
    assert status(spec) == "partial" and "--resume" in command(spec, "partial")
    (run / "latest").write_bytes(b"an old run's last epoch")
    start_run_dir(str(run), registration.base_cfg())  # --overwrite: a new run starts here
    assert not (run / SNAPSHOT).exists() and not (run / "latest").exists() and status(spec) == "missing"


def test_without_latest_or_snapshot_resume_is_one_line(tmp_path):
    cfg = _cfg("CE", EVERY_STEP)
    t = trainer_for(_noisy(cfg), cfg, tmp_path)
    os.makedirs(tmp_path / "run")
    with pytest.raises(UserError, match="no checkpoint at .*latest .no epoch finished."):
        t._resume()
    assert not resumable(str(tmp_path / "run"))


def test_the_clock_is_due_every_interval_and_never_when_off(monkeypatch):
    from mdistiller_ext.engine import snapshot

    now = [100.0]
    monkeypatch.setattr(snapshot.time, "monotonic", lambda: now[0])
    clock, off = snapshot.Clock(10), snapshot.Clock(0)
    due = []
    for t in (100.0, 699.0, 700.0, 701.0, 1299.9, 1300.0):
        now[0] = t
        due.append((clock.due(), off.due()))
    assert due == [(False, False), (False, False), (True, False), (False, False), (False, False), (True, False)]


def test_ctrl_c_message_names_the_snapshot(tmp_path):
    from mdistiller_ext.cli.train import _interrupted_message

    torch.save({"epoch": 1, "step": 12}, tmp_path / SNAPSHOT)
    assert _interrupted_message(str(tmp_path)) == \
        f"interrupted: 12 steps of epoch 1 are saved in {tmp_path / SNAPSHOT}; continue with --resume {tmp_path}"
    torch.save({"epoch": 3}, tmp_path / "latest")
    assert _interrupted_message(str(tmp_path)) == \
        f"interrupted: epochs 1-3 are saved in {tmp_path / 'latest'}; continue with --resume {tmp_path}"
    torch.save({"epoch": 4, "step": 7}, tmp_path / SNAPSHOT)
    assert ", and 7 steps of epoch 4 in " in _interrupted_message(str(tmp_path))
    (tmp_path / SNAPSHOT).write_bytes(b"cut short")
    assert "steps" not in _interrupted_message(str(tmp_path))

"""The engine's order of writes and its evaluation precision, in process."""
import pytest
import torch

from mdistiller_ext.host import registration
from mdistiller_ext.runs import worklog
from mdistiller_ext.engine.evaluate import evaluate
from mdistiller_ext.engine.runtime import Machine, resolve

from .test_study_options import Recording, resnet8, trainer_for


def test_a_crash_between_the_worklog_and_the_checkpoint_loses_nothing(tmp_path, monkeypatch):
    from mdistiller_ext.engine.trainer import Trainer

    cfg = registration.base_cfg()
    cfg.SOLVER.EPOCHS = 2
    trainer = trainer_for(Recording(resnet8(), resnet8(1), cfg), cfg, tmp_path)
    real_save = Trainer._save

    def crash_in_epoch_2(self, epoch, improved):
        if epoch == 2:
            raise KeyboardInterrupt  # the process dies after the epoch's logs, before its checkpoint
        real_save(self, epoch, improved)

    monkeypatch.setattr(Trainer, "_save", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    log_path = tmp_path / "run" / "worklog.txt"
    assert list(worklog.read(str(log_path)).epochs) == [1, 2]  # epoch 2 was logged, its checkpoint not
    monkeypatch.setattr(Trainer, "_save", real_save)
    resumed = trainer_for(Recording(resnet8(), resnet8(1), cfg), cfg, tmp_path)
    resumed.train(resume=True)
    log = worklog.read(str(log_path))
    assert list(log.epochs) == [1, 2] and log.finished
    assert (tmp_path / "run" / "worklog.txt").read_text().count("epoch: 2\n") == 1
    assert torch.load(tmp_path / "run" / "latest", weights_only=True)["epoch"] == 2


def test_test_accuracy_is_computed_in_fp32_whatever_the_training_precision(tmp_path):
    cfg = registration.base_cfg()
    cfg.SOLVER.EPOCHS = 1
    cfg.EXT.AMP = "bf16"  # bf16 autocast works on the CPU too
    rt = resolve(cfg, Machine())
    assert rt.amp is torch.bfloat16
    d = Recording(resnet8(), resnet8(1), cfg)
    trainer = trainer_for(d, cfg, tmp_path, runtime=rt)
    trainer.train()
    logged = worklog.read(str(tmp_path / "run" / "worklog.txt")).epochs[1]
    student = resnet8(3)
    student.load_state_dict(torch.load(tmp_path / "run" / "student_latest", weights_only=True)["model"])
    d.student = student
    fp32 = evaluate(d, trainer.val_loader, trainer._prepare, None)
    assert logged["test_acc"] == pytest.approx(fp32["test_acc"], abs=0.005)
    assert logged["test_loss"] == pytest.approx(fp32["test_loss"], abs=0.005)
    assert not any(isinstance(k, str) and k.startswith("rng") for k in torch.load(tmp_path / "run" / "latest", weights_only=True))


def test_fp16_loss_scale_is_checkpointed_and_restored(tmp_path):
    """EXT.AMP fp16 (torch's CPU GradScaler stands in for CUDA's): the scaler's state is in every checkpoint
    and a resumed run continues from it (it had restarted at 65536)."""
    cfg = registration.base_cfg()
    cfg.SOLVER.EPOCHS = 1
    cfg.EXT.AMP = "fp16"
    rt = resolve(cfg, Machine())
    assert rt.amp is torch.float16
    trainer = trainer_for(Recording(resnet8(), resnet8(1), cfg), cfg, tmp_path, runtime=rt)
    trainer.train()
    latest = tmp_path / "run" / "latest"
    state = torch.load(latest, weights_only=True)
    assert state["scaler"]["scale"] == trainer.setup.scaler.get_scale()
    state["scaler"]["scale"] = 1024.0  # as if the run had backed off from overflows
    torch.save(state, latest)
    cfg.SOLVER.EPOCHS = 2
    resumed = trainer_for(Recording(resnet8(), resnet8(1), cfg), cfg, tmp_path, runtime=rt)
    assert resumed._resume() == 1
    assert resumed.setup.scaler.get_scale() == 1024.0


@pytest.mark.slow
def test_compile_runs_through_the_engine_on_the_cpu_with_alignment_and_the_probe(tmp_path):
    from mdistiller_ext.methods.dhkd import DHKD

    cfg = registration.base_cfg()
    cfg.SOLVER.EPOCHS = 1
    cfg.EXT.COMPILE = True
    cfg.SOLVER.TRAINER = "align"
    cfg.EXT.GRAD_PROBE_EVERY = 2  # both differentiate the compiled graph twice
    trainer = trainer_for(DHKD(resnet8(), resnet8(1).eval(), cfg), cfg, tmp_path)
    trainer.train()
    log = worklog.read(str(tmp_path / "run" / "worklog.txt"))
    assert log.finished and log.epochs[1]["train_loss"] == log.epochs[1]["train_loss"] and "grad_cos" in log.epochs[1]
    # in place: the checkpoint's keys are the plain modules'
    keys = torch.load(tmp_path / "run" / "student_latest", weights_only=True)["model"].keys()
    assert not any("_orig_mod" in k for k in keys)


def test_without_a_terminal_a_progress_line_comes_during_the_epoch(tmp_path, monkeypatch, capsys):
    from mdistiller_ext.engine import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "LOG_SECONDS", 0.0)
    monkeypatch.setattr(trainer_module, "CHECK_EVERY", 1)
    cfg = registration.base_cfg()
    cfg.SOLVER.EPOCHS = 1
    trainer = trainer_for(Recording(resnet8(), resnet8(1), cfg), cfg, tmp_path)
    cfg.EXT.PROGRESS = True
    trainer.train()
    out = capsys.readouterr().out
    assert "epoch 1 step 1/3 | loss " in out and "images/s" in out and "epoch 1/1 |" in out

"""A new logit-KD method defined entirely in this file, as a user would write one (README, "Adding a
method"): its loss, Distiller, config node with defaults, validation rule and recipe, registered by one
decorator. The tests train it through tools/train.py, reject a bad value of its key, and run it through
the comparison tool, loading this very file with --plugin; no other file of the project knows of it.

Only absolute imports: the tools load this file by its path.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from yacs.config import CfgNode as CN

from mdistiller_ext.methods.base import Distiller, teacher_logits
from mdistiller_ext.registry import register_method
from mdistiller_ext.rules import NON_NEGATIVE, POSITIVE


# ----- the method: logit matching by mean squared error (Ba & Caruana's "do deep nets need to be deep?") -----
def logit_mse(z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared logit differences summed over classes (the teacher is constant)."""
    return (z_s.float() - z_t.float().detach()).pow(2).sum(dim=1).mean()


def node() -> CN:
    n = CN()
    n.CE_WEIGHT = 1.0
    n.WEIGHT = 0.05            # weight of the logit MSE
    return n


def recipe(dataset: str, pair_name: str, pair) -> dict:
    return {"LOGITMSE": {"CE_WEIGHT": 1.0, "WEIGHT": 0.05}}


@register_method("LOGITMSE", summary="logit matching by squared error", node=node, recipe=recipe,
                 datasets=("cifar10",), rules=(("LOGITMSE.WEIGHT", NON_NEGATIVE), ("LOGITMSE.CE_WEIGHT", POSITIVE)))
class LogitMSE(Distiller):
    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: CN) -> None:
        super().__init__(student, teacher)
        self.c = cfg.LOGITMSE

    def forward_train(self, image: torch.Tensor, target: torch.Tensor, **kwargs):
        logits, _ = self.student(image)
        z_t = teacher_logits(self.teacher, image)
        return logits, {"loss_ce": self.c.CE_WEIGHT * F.cross_entropy(logits, target),
                        "loss_kd": self.c.WEIGHT * logit_mse(logits, z_t)}


# ----- the tests -----
ROOT = Path(__file__).resolve().parents[1]
THIS = str(Path(__file__).resolve())
SMALL = ["SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "16", "DATASET.NUM_WORKERS", "0", "EXT.DATA_ROOT", "data",
         "EXT.DATA_CACHE", "data", "EXT.CKPT_ROOT", "ckpts", "EXT.DOWNLOAD", "False", "EXT.PROGRESS", "False", "EXT.TEACHER_MIN_ACC", "0",
         "LOG.PREFIX", "out"]


def tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MDISTILLER_EXT_PLUGINS"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from mdistiller_ext.host.standalone.models import cifar_model_dict
    from tests.conftest import write_cifar10_jpeg_tar

    w = tmp_path_factory.mktemp("one_file")
    (w / "data").mkdir()
    write_cifar10_jpeg_tar(w / "data" / "cifar10-jpeg.tar.gz", n_train=4, n_test=2)
    teacher = w / "ckpts/cifar10_teachers/resnet20_vanilla/ckpt_epoch_240.pth"
    teacher.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": cifar_model_dict["resnet20"][0](num_classes=10).state_dict()}, teacher)
    return w


def test_the_method_is_registered_with_its_node_rules_and_recipe():
    from mdistiller_ext import registry
    from mdistiller_ext.host import registration
    from mdistiller_ext.generate import method_config

    m = registry.get("LOGITMSE")
    assert m.distiller is LogitMSE and m.slug == "logitmse" and not m.builtin
    assert registration.base_cfg().LOGITMSE.WEIGHT == 0.05
    assert registration.distiller_registry()["LOGITMSE"] is LogitMSE
    cfg = method_config("cifar10", "logitmse", "res20_res8")
    assert cfg["DISTILLER"] == {"TYPE": "LOGITMSE", "TEACHER": "resnet20", "STUDENT": "resnet8"}
    assert cfg["LOGITMSE"] == {"CE_WEIGHT": 1.0, "WEIGHT": 0.05} and cfg["SOLVER"]["EPOCHS"] == 240


def test_gradient_of_the_loss_matches_its_closed_form():
    z_s = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    z_t = torch.randn(4, 10, dtype=torch.float64)
    logit_mse(z_s, z_t).backward()
    assert torch.allclose(z_s.grad, 2 * (z_s.detach() - z_t) / 4)


@pytest.mark.slow
def test_trains_through_tools_train_and_rejects_a_bad_value(work):
    from mdistiller_ext.generate import method_config

    cfg = method_config("cifar10", "logitmse", "res20_res8")
    (work / "logitmse.yaml").write_text(yaml.safe_dump(cfg))
    bad = tool("train.py", "--plugin", THIS, "--cfg", "logitmse.yaml", *SMALL, "LOGITMSE.WEIGHT", "-1", cwd=work)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: config LOGITMSE.WEIGHT = -1.0 is invalid: expected a number >= 0"], bad.stderr
    assert not (work / "out").exists()  # refused before the run directory
    unknown = tool("train.py", "--cfg", "logitmse.yaml", *SMALL, cwd=work)  # without the plug-in
    assert unknown.returncode == 2 and "unknown config key LOGITMSE" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "pass --plugin" in unknown.stderr
    r = tool("train.py", "--plugin", THIS, "--cfg", "logitmse.yaml", *SMALL, cwd=work)
    assert r.returncode == 0, r.stderr
    run = next((work / "out" / "cifar10_logitmse").iterdir())
    log = (run / "worklog.txt").read_text()
    assert "epoch: 1" in log and "best_acc" in log
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["DISTILLER"]["TYPE"] == "LOGITMSE" and saved["LOGITMSE"]["WEIGHT"] == 0.05
    # tools/eval.py rebuilds the whole distiller from the run's config (which names the plug-in's node)
    ev = tool("eval.py", "--plugin", THIS, "-c", str(run / "best"), "--device", "cpu", cwd=work)
    assert ev.returncode == 0, ev.stderr
    best = worklog_best(run)
    assert f"head main: top-1 {best:.2f}" in ev.stdout and "LOGITMSE distiller" in ev.stdout
    # and without --plugin, one line naming it
    plain = tool("eval.py", "-c", str(run / "best"), "--device", "cpu", cwd=work)
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1 and "--plugin" in plain.stderr, plain.stderr


def worklog_best(run: Path) -> float:
    from mdistiller_ext.runs import worklog

    return worklog.read(str(run / "worklog.txt")).best_acc


@pytest.mark.slow
def test_runs_through_the_comparison_tool(work):
    r = tool("compare.py", "--plugin", THIS, "--dataset", "cifar10", "--methods", "logitmse", "kd", "--pairs",
             "res20_res8", "--seeds", "0", "--out", "report", "--configs", "no_configs_here",
             "--set", *SMALL, "EXPERIMENT.PROJECT", "cmp", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    table = (work / "report/comparison.md").read_text()
    assert "| cifar10 | res20_res8 | logitmse | 1 |" in table and "| cifar10 | res20_res8 | kd | 1 |" in table
    # the configs came from the recipes (this file's and KD's module), written beside the report
    written = yaml.safe_load((work / "report/configs/cifar10/logitmse/res20_res8.yaml").read_text())
    assert written["LOGITMSE"]["WEIGHT"] == 0.05
    assert (work / "report/configs/cifar10/kd/res20_res8.yaml").is_file()

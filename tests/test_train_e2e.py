"""Real runs of tools/train.py in subprocesses on a tiny on-disk CIFAR-10 (JPEG layout)."""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from mdistiller_ext.runs import worklog
from mdistiller_ext.host.adapter import HAS_MDISTILLER
from mdistiller_ext.host.standalone.models import cifar_model_dict

from .conftest import ROOT, run_train, write_cifar10_jpeg_tar

pytestmark = pytest.mark.slow
COMMON = {"DATASET": {"NUM_WORKERS": 0, "TEST": {"BATCH_SIZE": 32}},
          "EXT": {"DATA_ROOT": "data", "DATA_CACHE": "data", "CKPT_ROOT": "ckpts", "PROGRESS": False, "DOWNLOAD": False,
                  "TEACHER_MIN_ACC": 0.0},  # random teachers: the tests are about the engine
          "LOG": {"PREFIX": "out"}}


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def write_cfg(work: Path, name: str, src: str, extra: dict) -> str:
    cfg = yaml.safe_load((ROOT / "configs" / src).read_text())
    cfg = merge(merge(cfg, COMMON), extra)
    (work / name).write_text(yaml.safe_dump(cfg))
    return name


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("e2e")
    (w / "data").mkdir()
    write_cifar10_jpeg_tar(w / "data" / "cifar10-jpeg.tar.gz", n_train=6, n_test=3)
    cfg = write_cfg(w, "teacher.yaml", "cifar10/vanilla/resnet20.yaml",
                    {"DISTILLER": {"STUDENT": "resnet8"}, "SOLVER": {"EPOCHS": 2, "BATCH_SIZE": 16}})
    r = run_train(["--cfg", cfg], w)
    assert r.returncode == 0, r.stderr
    (w / "teacher_stdout.txt").write_text(r.stdout)
    return w


def run_dir(work: Path, project: str, tag: str) -> Path:
    return work / "out" / project / tag


def test_teacher_training_exports_to_teacher_layout(work):
    exported = work / "ckpts" / "cifar10_teachers" / "resnet8_vanilla" / "ckpt_epoch_2.pth"
    sd = torch.load(exported, weights_only=True)["model"]
    cifar_model_dict["resnet8"][0](num_classes=10).load_state_dict(sd)
    # the best epoch by default (the model best_acc describes), with a record beside it
    run = next((work / "out" / "cifar10_teachers").iterdir())
    best = torch.load(run / "student_best", weights_only=True)["model"]
    assert all(torch.equal(sd[k], best[k]) for k in sd)
    record = json.loads(exported.with_suffix(".json").read_text())
    log = worklog.read(run / "worklog.txt")
    assert record["which"] == "best" and record["test_acc"] == log.best_acc
    assert log.epochs[record["epoch"]]["test_acc"] == log.best_acc and record["source_run"].endswith(run.name)
    # one line per epoch although stdout is not a terminal
    lines = (work / "teacher_stdout.txt").read_text().splitlines()
    assert [line.split(" |")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert (f"the weights of epoch {record['epoch']} ({record['which']}; test top-1 {record['test_acc']:.2f}), under the "
            "name mdistiller looks for after a 2-epoch run") in lines[-2]


def test_student_reports_and_records_its_teacher(work):
    cfg = write_cfg(work, "teacher_info.yaml", "cifar10/kd/res20_res8.yaml",
                    {"DISTILLER": {"TEACHER": "resnet8"}, "SOLVER": {"EPOCHS": 1, "BATCH_SIZE": 16},
                     "EXPERIMENT": {"TAG": "teacher_info"}})
    r = run_train(["--cfg", cfg], work)
    assert r.returncode == 0, r.stderr
    exported = work / "ckpts" / "cifar10_teachers" / "resnet8_vanilla" / "ckpt_epoch_2.pth"
    record = json.loads(exported.with_suffix(".json").read_text())
    line = next(x for x in r.stdout.splitlines() if x.startswith("teacher: "))
    assert str(exported.relative_to(work)) in line and f"recorded test top-1 {record['test_acc']:.2f}" in line
    info = json.loads((run_dir(work, "cifar10_kd", "teacher_info") / "runtime.json").read_text())
    assert info["teacher"]["sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest() == info["teacher_sha256"]
    assert info["teacher"]["test_acc"] == record["test_acc"]
    # how the run was computed, as resolved on this machine (config.yaml says "auto")
    from mdistiller_ext.host.adapter import HAS_MDISTILLER

    assert info["route"] == "mdistiller_ext engine" and info["amp"] == "fp32" and info["world_size"] == 1
    assert info["data_path"] == "device-resident (fast)" and info["channels_last"] is True  # auto: on
    assert info["zoo"] == ("host (mdistiller)" if HAS_MDISTILLER else "standalone")
    assert info["torch"] == torch.__version__ and info["mdistiller_ext_commit"]
    assert info["cost"][0]["epochs"] == [1, 1] and info["cost"][0]["cpu_s"] > 0
    header = (run_dir(work, "cifar10_kd", "teacher_info") / "worklog.txt").read_text().splitlines()[0]
    assert header.startswith("# runtime: route=mdistiller_ext engine | device=cpu") and "teacher_sha256=" in header


@pytest.mark.parametrize("method,extra", [
    ("dhkd", {}),
    ("dhkd", {"DHKD": {"HEAD": "nonlinear"}, "SOLVER": {"TRAINER": "align"}}),
    ("aekt", {"AEKT": {"SERIAL": "kd_then_cls"}}),
    ("kd", {}), ("dkd", {}),
    # the baselines of issue 28 from their generated configs (CRD: its embedding sizes for a resnet8 teacher)
    ("kd", {"KD": {"LOGIT_STAND": True, "TEMPERATURE": 2, "LOSS": {"KD_WEIGHT": 9.0}}}),
    ("dist", {}), ("ttm", {}), ("wttm", {}),
    ("crd", {"CRD": {"NCE": {"K": 32}}}),
])
def test_distillation_run_outputs(work, method, extra):
    tag = (f"{method}-{len(extra)}-{extra.get('SOLVER', {}).get('TRAINER', '')}{extra.get('AEKT', {}).get('SERIAL', '')}"
           f"{'-ls' if extra.get('KD', {}).get('LOGIT_STAND') else ''}")
    cfg = write_cfg(work, f"{tag}.yaml", f"cifar10/{method}/res20_res8.yaml",
                    merge({"DISTILLER": {"TEACHER": "resnet8"}, "SOLVER": {"EPOCHS": 1, "BATCH_SIZE": 16},
                           "EXPERIMENT": {"TAG": tag}}, extra))
    r = run_train(["--cfg", cfg], work)
    assert r.returncode == 0, r.stderr
    d = run_dir(work, f"cifar10_{method}", tag)
    for f in ("worklog.txt", "latest", "student_latest", "best", "student_best", "config.yaml"):
        assert (d / f).is_file(), f
    assert any(p.name.startswith("events.out.tfevents") for p in (d / "train.events").iterdir())
    log = worklog.read(str(d / "worklog.txt"))
    assert log.finished and list(log.epochs) == [1]
    for key in ("train_acc", "train_loss", "test_acc", "test_acc_top5", "test_loss"):
        assert key in log.epochs[1]
    assert log.best_acc == log.epochs[1]["test_acc"]
    student = torch.load(d / "student_best", weights_only=True)["model"]
    if extra.get("AEKT", {}).get("SERIAL") == "kd_then_cls":
        # the deployed student carries the serialization layer
        assert "serial.delta" in student and "net.fc.weight" in student
        assert "test_acc_kd" in log.epochs[1]
    else:
        cifar_model_dict["resnet8"][0](num_classes=10).load_state_dict(student)
    if method == "dhkd":
        assert "test_acc_aux" in log.epochs[1]
        assert "DHKD adds " in r.stdout and "training-only parameters" in r.stdout


def test_resume_continues_and_matches_straight_run(work):
    base = {"DISTILLER": {"TEACHER": "resnet8"}, "SOLVER": {"BATCH_SIZE": 16}, "EXPERIMENT": {"TAG": "resume"}}
    cfg = write_cfg(work, "resume.yaml", "cifar10/dhkd/res20_res8.yaml", merge(base, {"SOLVER": {"EPOCHS": 1}}))
    assert run_train(["--cfg", cfg], work).returncode == 0
    d = run_dir(work, "cifar10_dhkd", "resume")
    # starting again over a finished run is refused without a flag
    again = run_train(["--cfg", cfg], work)
    assert again.returncode == 2 and "--resume" in again.stderr
    write_cfg(work, "resume.yaml", "cifar10/dhkd/res20_res8.yaml", merge(base, {"SOLVER": {"EPOCHS": 2}}))
    r = run_train(["--cfg", cfg, "--resume"], work)
    assert r.returncode == 0, r.stderr
    log = worklog.read(str(d / "worklog.txt"))
    assert list(log.epochs) == [1, 2] and log.finished
    assert torch.load(d / "latest", weights_only=True)["epoch"] == 2
    straight = write_cfg(work, "straight.yaml", "cifar10/dhkd/res20_res8.yaml",
                         merge(base, {"SOLVER": {"EPOCHS": 2}, "EXPERIMENT": {"TAG": "straight"}}))
    assert run_train(["--cfg", straight], work).returncode == 0
    a = torch.load(d / "student_latest", weights_only=True)["model"]
    b = torch.load(run_dir(work, "cifar10_dhkd", "straight") / "student_latest", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resuming under a changed config names the differing key
    write_cfg(work, "resume.yaml", "cifar10/dhkd/res20_res8.yaml", merge(base, {"SOLVER": {"EPOCHS": 3}, "DHKD": {"T": 3.0}}))
    bad = run_train(["--cfg", cfg, "--resume"], work)
    assert bad.returncode == 2 and "DHKD.T: 2.0 -> 3.0" in bad.stderr


def _teacher_100_classes(work: Path) -> str:
    path = work / "ckpts100" / "cifar10_teachers" / "resnet8_vanilla" / "ckpt_epoch_240.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": cifar_model_dict["resnet8"][0](num_classes=100).state_dict()}, path)
    return "ckpts100"


BAD = [
    (["DISTILLER.TYPE", "FOO"], "unknown DISTILLER.TYPE 'FOO'"),
    # CRD runs here: a config whose embedding sizes do not fit the models is one line; ReviewKD is mdistiller's
    (["DISTILLER.TYPE", "CRD"], "config CRD.FEAT does not fit resnet8 -> resnet8: CRD.FEAT.STUDENT_DIM 256 (expected 64)"),
    (["DISTILLER.TYPE", "REVIEWKD"], "config REVIEWKD does not fit resnet8 -> resnet8: IN_CHANNELS"
     if HAS_MDISTILLER else "requires mdistiller"),
    (["DISTILLER.STUDENT", "resnet9000"], "unknown model 'resnet9000'"),
    (["EXT.CKPT_ROOT", "empty"], "no cifar10 teacher checkpoint for resnet8: looked for empty/cifar10_teachers/resnet8_vanilla/ckpt_epoch_240.pth"),
    (["EXT.CKPT_ROOT", "@100"], "num_classes differs"),
    (["EXT.DATA_ROOT", "nowhere"], "cifar10 not found at nowhere"),
    # a missing teacher is said before the data is looked for (or downloaded)
    (["EXT.DATA_ROOT", "nowhere", "EXT.CKPT_ROOT", "empty"], "no cifar10 teacher checkpoint for resnet8"),
    (["EXT.TEACHER_CKPT", "missing.pth"], "EXT.TEACHER_CKPT missing.pth does not exist"),
    (["DHKD.NOPE", "1"], "command-line override: unknown config key DHKD.NOPE"),
    (["DHKD.TT", "3"], "command-line override: unknown config key DHKD.TT; did you mean DHKD.T?"),
    (["SOLVER.LR", "fast"], "command-line override: SOLVER.LR = 'fast' has the wrong type: expected a number"),
    (["SOLVER.EPOCHS", "2.5"], "command-line override: SOLVER.EPOCHS = 2.5 has the wrong type: expected an integer"),
    (["DHKD.T", "-2.0"], "config DHKD.T = -2.0 is invalid: expected a number > 0"),
    (["DHKD.T", "-1"], "config DHKD.T = -1.0 is invalid: expected a number > 0"),  # an integer for a float key
    (["SOLVER.EPOCHS"], "KEY VALUE pairs"),
    (["LOG.PREFIX", "bad.yaml/out"], "the run directory bad.yaml/out/"),
]


@pytest.mark.parametrize("opts,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_inputs_are_one_line_errors(work, opts, message):
    cfg = write_cfg(work, "bad.yaml", "cifar10/dhkd/res20_res8.yaml",
                    {"DISTILLER": {"TEACHER": "resnet8"}, "SOLVER": {"EPOCHS": 1}})
    if opts[-1] == "@100":
        opts = [opts[0], _teacher_100_classes(work)]
    prefix = [] if "LOG.PREFIX" in opts else ["LOG.PREFIX", "out_bad"]
    r = run_train(["--cfg", cfg, *opts, *prefix], work)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert message in lines[0]
    # a run refused before its first step leaves no run directory behind
    assert not (work / "out_bad").exists() or not any((work / "out_bad").rglob("config.yaml"))


def test_missing_config_file(work):
    r = run_train(["--cfg", "nope.yaml"], work)
    assert r.returncode == 2 and r.stderr.strip() == "error: config file not found: nope.yaml"


def test_aekt_export_writes_matrix_heatmap_and_summary(work):
    import json
    import subprocess
    import sys

    from PIL import Image

    cfg = write_cfg(work, "aekt_export.yaml", "cifar10/aekt/res20_res8.yaml",
                    {"DISTILLER": {"TEACHER": "resnet8"}, "SOLVER": {"EPOCHS": 1, "BATCH_SIZE": 16},
                     "EXPERIMENT": {"TAG": "export"}, "AEKT": {"WARMUP": 0}})
    assert run_train(["--cfg", cfg], work).returncode == 0
    d = run_dir(work, "cifar10_aekt", "export")
    env = dict(os.environ)
    r = subprocess.run([sys.executable, str(ROOT / "tools/export_serialization.py"), str(d)], cwd=work,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import numpy as np

    serial = np.load(d / "serialization_matrix.npy")
    sim = np.load(d / "teacher_similarity.npy")
    assert serial.shape == sim.shape == (10, 10)
    assert np.allclose(sim.sum(1), 1.0) and not np.allclose(serial, np.eye(10))
    summary = json.loads((d / "serialization_summary.json").read_text())
    assert -1.0 <= summary["pearson_offdiag_W_vs_teacher"] <= 1.0 and summary["num_classes"] == 10
    assert summary["similarity_split"] == "train" and summary["temperature"] == 4.0  # the run's AEKT.T
    with Image.open(d / "serialization_heatmap.png") as im:
        im.load()
        assert im.size == (1200, 560)
    closing = r.stdout.strip().splitlines()[-1]
    assert closing.startswith("wrote 4 files: ") and str(d / "serialization_heatmap.png") in closing
    # a run without the layer says so in one line
    plain = run_dir(work, "cifar10_kd", "kd-0-")
    r = subprocess.run([sys.executable, str(ROOT / "tools/export_serialization.py"), str(plain)], cwd=work,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no serialization layer" in r.stderr

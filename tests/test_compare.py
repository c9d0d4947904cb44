"""Comparison tooling: aggregation on hand-written worklogs, skip/resume logic, reference data, outputs."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mdistiller_ext.reporting import aggregate
from mdistiller_ext.reporting import reference
from mdistiller_ext.cli import sweep
from mdistiller_ext.runs.worklog import best_line, epoch_block

from .conftest import ROOT, write_cifar10_jpeg_tar

# a worklog exactly as mdistiller writes it (two dashed lines between blocks, no newline at the end)
HOST_LOG = """-------------------------
epoch: 1
lr: 0.05
train_acc: 30.00
train_loss: 2.10
test_acc: 60.50
test_acc_top5: 85.00
test_loss: 1.50
-------------------------
-------------------------
epoch: 2
lr: 0.05
train_acc: 40.00
train_loss: 1.90
test_acc: 76.00
test_acc_top5: 93.00
test_loss: 1.20
-------------------------
-------------------------
epoch: 3
lr: 0.01
train_acc: 45.00
train_loss: 1.80
test_acc: 75.50
test_acc_top5: 93.50
test_loss: 1.25
-------------------------
best_acc\t76.00"""


def make_run(root: Path, project: str, name: str, accs, finished=True, cfg=None, top5=None):
    d = root / project / name
    d.mkdir(parents=True)
    text = "".join(epoch_block(e, 0.05, {"test_acc": a, "test_acc_top5": (top5 or {}).get(e, a + 20)})
                   for e, a in accs.items())
    if finished:
        text += best_line(max(accs.values()))
    (d / "worklog.txt").write_text(text)
    if cfg:
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d


def cfg(method, teacher, student, seed, epochs, dataset="cifar100"):
    return {"DATASET": {"TYPE": dataset}, "DISTILLER": {"TYPE": method.upper(), "TEACHER": teacher, "STUDENT": student},
            "EXT": {"SEED": seed}, "SOLVER": {"EPOCHS": epochs}}


def test_host_worklog_run_directory(tmp_path):
    d = tmp_path / "cifar100_baselines" / "dkd,res32x4,res8x4"
    d.mkdir(parents=True)
    (d / "worklog.txt").write_text(HOST_LOG)
    r = aggregate.read_run(str(d))
    assert (r.dataset, r.method, r.pair, r.status) == ("cifar100", "dkd", "res32x4_res8x4", "finished")
    assert (r.best_top1, r.best_top5, r.last_top1, r.last_top5) == (76.0, 93.0, 75.5, 93.5)
    assert r.best_epoch == 2
    row, = aggregate.summarize([r], reference.load())
    assert row.reference == 76.32 and row.source == "mdistiller_readme"
    assert row.delta == pytest.approx(76.0 - 76.32)


def test_means_stds_best_last_and_unfinished(tmp_path):
    runs = [
        make_run(tmp_path, "p", "a0", {1: 60.0, 2: 70.0, 3: 69.0}, cfg=cfg("dhkd", "resnet56", "resnet20", 0, 3)),
        make_run(tmp_path, "p", "a1", {1: 61.0, 2: 72.0, 3: 71.0}, cfg=cfg("dhkd", "resnet56", "resnet20", 1, 3)),
        make_run(tmp_path, "p", "a2", {1: 60.0, 2: 71.0, 4: 99.0}, cfg=cfg("dhkd", "resnet56", "resnet20", 2, 4)),  # epoch 3 missing
        make_run(tmp_path, "p", "a3", {1: 58.0}, finished=False, cfg=cfg("dhkd", "resnet56", "resnet20", 3, 3)),  # crashed
        make_run(tmp_path, "p", "a4", {1: 50.0, 2: 55.0}, cfg=cfg("dhkd", "resnet56", "resnet20", 4, 3)),  # stopped early
    ]
    results = [aggregate.read_run(str(d)) for d in runs]
    assert [r.status for r in results] == ["finished", "finished", "incomplete", "incomplete", "incomplete"]
    row, = aggregate.summarize(results, reference.load())
    assert (row.dataset, row.pair, row.method, row.n) == ("cifar100", "res56_res20", "dhkd", 2)
    assert row.stats["best_top1"] == pytest.approx((71.0, 2 ** 0.5))
    assert row.stats["last_top1"] == pytest.approx((70.0, 2 ** 0.5))
    assert row.stats["best_top5"] == pytest.approx((91.0, 2 ** 0.5))
    assert row.reference is None and row.delta is None  # DHKD's published numbers are not available
    text = aggregate.write_markdown([row], [r for r in results if r.status != "finished"], reference.load(), str(tmp_path / "t.md"))
    assert "71.00 ± 1.41" in text and "70.00 ± 1.41" in text and text.count("incomplete:") == 3


def test_a_single_run_shows_no_spread(tmp_path):
    d = make_run(tmp_path, "p", "one", {1: 60.0, 2: 70.0}, cfg=cfg("kd", "resnet56", "resnet20", 0, 2))
    row, = aggregate.summarize([aggregate.read_run(str(d))], reference.load())
    text = aggregate.write_markdown([row], [], reference.load(), str(tmp_path / "t.md"))
    line = next(l for l in text.splitlines() if "| kd |" in l)
    assert "| 70.00 | 70.00 |" in line and "±" not in line
    aggregate.write_csv([row], str(tmp_path / "t.csv"))
    import csv
    rec, = csv.DictReader(open(tmp_path / "t.csv"))
    assert rec["best_top1_mean"] == "70.0000" and rec["best_top1_std"] == ""


def test_best_epoch_tie_takes_the_last_one(tmp_path):
    d = make_run(tmp_path, "p", "tie", {1: 70.0, 2: 70.0}, top5={1: 80.0, 2: 90.0}, cfg=cfg("kd", "resnet56", "resnet20", 0, 2))
    r = aggregate.read_run(str(d))
    assert r.best_top5 == 90.0 and r.best_epoch == 2


def test_reference_loader(tmp_path):
    refs = reference.load()
    assert refs.lookup("cifar100", "vgg13_mv2", "reviewkd") == reference.Reference(70.37, None, "dkd_paper")
    assert refs.lookup("imagenet", "r50_mv1", "crd") == reference.Reference(71.37, 90.41, "dkd_paper")
    assert refs.lookup("cifar100", "res56_res20", "dhkd") is None
    assert refs.lookup("cifar10", "res20_res8", "kd") is None
    assert "ShuffleNet-V2" in refs.notes["res32x4_shuv2"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: {}\ncifar100: {res56_res20: {kd: {top1: 1.0, source: nowhere}}}\n")
    with pytest.raises(ValueError, match="unknown source"):
        reference.load(str(bad)).lookup("cifar100", "res56_res20", "kd")


def test_every_reference_number_matches_the_spec():
    spec = ROOT.parent / "shared" / "specs" / "reference-results.md"
    if not spec.exists():
        pytest.skip("../shared/specs/reference-results.md not present")
    text = spec.read_text()
    refs = yaml.safe_load(Path(reference.DEFAULT_PATH).read_text())
    for ds in ("cifar100", "imagenet"):
        for pair, methods in refs[ds].items():
            for m, v in methods.items():
                assert f"{v['top1']:.2f}" in text, (ds, pair, m)


def test_tables_and_plots(tmp_path):
    runs = [make_run(tmp_path, "p", f"{m}{s}", {1: 60.0 + s + i, 2: 65.0 + s + i}, cfg=cfg(m, "resnet56", "resnet20", s, 2))
            for i, m in enumerate(("kd", "dkd")) for s in (0, 1)]
    rows = aggregate.summarize([aggregate.read_run(str(d)) for d in runs], reference.load())
    aggregate.write_csv(rows, str(tmp_path / "t.csv"))
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("dataset,pair,method,label,seeds,best_top1_mean")
    assert "70.66" in lines[2] and "mdistiller_readme" in lines[2]  # kd sorts after dkd
    bars = aggregate.plot_bars(rows, str(tmp_path / "bars.png"))
    curves = aggregate.plot_curves(rows, lambda ds, p: str(tmp_path / f"curves_{ds}_{p}.png"))
    with Image.open(bars) as im:
        im.load()
        assert im.size == (600, 500)  # 4.5 inches + a quarter inch per legend row below the axes
    with Image.open(curves[0]) as im:
        im.load()
        assert im.size == (800, 500) and curves[0].endswith("curves_cifar100_res56_res20.png")


def test_plan_status_and_commands(tmp_path):
    specs = sweep.plan("cifar10", ["kd", "dhkd"], ["res20_res8"], [0, 1], ["LOG.PREFIX", str(tmp_path)])
    assert [s.label for s in specs] == ["kd res20_res8 seed 0", "kd res20_res8 seed 1", "dhkd res20_res8 seed 0", "dhkd res20_res8 seed 1"]
    s = specs[0]
    assert s.run_dir == os.path.join(str(tmp_path), "cifar10_kd", "kd,resnet20,resnet8,EXT.SEED:0,LOG.PREFIX:" + str(tmp_path).replace(os.sep, "_"))
    assert sweep.status(s) == "missing" and "--resume" not in sweep.command(s, "missing")
    os.makedirs(s.run_dir)
    Path(s.run_dir, "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 10.0}))
    assert sweep.status(s) == "missing" and "--overwrite" in sweep.command(s, "missing")
    Path(s.run_dir, "latest").write_bytes(b"x")
    assert sweep.status(s) == "partial" and "--resume" in sweep.command(s, "partial")
    Path(s.run_dir, "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 10.0}) + best_line(10.0))
    assert sweep.status(s) == "finished"
    report = sweep.execute([s], str(tmp_path / "logs"), echo=lambda m: None)
    assert report["skipped"] == [s] and not report["ran"]
    with pytest.raises(Exception, match="unknown cifar10 pair"):
        sweep.plan("cifar10", ["kd"], ["res1_res2"], [0])


@pytest.mark.slow
def test_compare_end_to_end(tmp_path):
    (tmp_path / "data").mkdir()
    write_cifar10_jpeg_tar(tmp_path / "data" / "cifar10-jpeg.tar.gz", n_train=4, n_test=2)
    import torch

    from mdistiller_ext.host.standalone.models import cifar_model_dict

    teacher = tmp_path / "ckpts/cifar10_teachers/resnet20_vanilla/ckpt_epoch_240.pth"
    teacher.parent.mkdir(parents=True)
    torch.save({"model": cifar_model_dict["resnet20"][0](num_classes=10).state_dict()}, teacher)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "dataset": "cifar10", "methods": ["kd", "dhkd"], "pairs": ["res20_res8"], "seeds": [0, 1], "out": "report",
        "jobs": 2,  # two real runs side by side
        "set": {"SOLVER.EPOCHS": 1, "SOLVER.BATCH_SIZE": 16, "DATASET.NUM_WORKERS": 0, "EXT.DATA_ROOT": "data",
                "EXT.DATA_CACHE": "data", "EXT.CKPT_ROOT": "ckpts", "EXT.DOWNLOAD": False, "LOG.PREFIX": "out",
                "EXT.TEACHER_MIN_ACC": 0.0}}))
    env = dict(os.environ)
    tool = [sys.executable, str(ROOT / "tools/compare.py"), "--sweep", str(sweep_file)]
    dry = subprocess.run(tool + ["--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and dry.stdout.count("not run yet") == 4 and not (tmp_path / "out").exists()
    assert "need a teacher" not in dry.stderr  # the teacher exists
    r = subprocess.run(tool, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    table = (tmp_path / "report/comparison.md").read_text()
    assert "| cifar10 | res20_res8 | dhkd | 2 |" in table and "| cifar10 | res20_res8 | kd | 2 |" in table
    for f in ("comparison.csv", "bars.png", "curves_cifar10_res20_res8.png"):
        assert (tmp_path / "report" / f).is_file()
    logs = sorted(p.name for p in (tmp_path / "report/logs").iterdir())
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("student_latest")}
    refused = subprocess.run(tool, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "already holds a report" in refused.stderr  # no silent overwrite
    again = subprocess.run(tool + ["--replace-report", "--jobs", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("finished, skipped") == 4
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("student_latest")}
    assert len(logs) == 4
    # a sweep with a failing run reports it and exits non-zero, after tabulating the rest
    bad = subprocess.run(tool + ["--methods", "kd", "reviewkd", "--replace-report"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    from mdistiller_ext.host.adapter import HAS_MDISTILLER

    if HAS_MDISTILLER:  # mdistiller's ReviewKD runs on this engine, on the CPU too
        assert bad.returncode == 0, bad.stderr
        assert "| cifar10 | res20_res8 | reviewkd | 2 |" in (tmp_path / "report/comparison.md").read_text()
    else:
        assert bad.returncode == 1 and "failed" in bad.stderr and "requires mdistiller" in bad.stderr


def write_run_from_config(root: Path, name: str, config: str, acc: float, opts=(), runtime=None) -> Path:
    """A finished run directory as tools/train.py leaves it: config.yaml (the merged config), worklog, runtime."""
    from mdistiller_ext.runs.naming import load_config

    opts = list(opts) if "SOLVER.EPOCHS" in opts else ["SOLVER.EPOCHS", "2", *opts]
    cfg = load_config(str(ROOT / config), opts)
    n = cfg.SOLVER.EPOCHS
    d = make_run(root, "p", name, {e: acc - (n - e) for e in range(1, n + 1)})
    (d / "config.yaml").write_text(cfg.dump())
    if runtime is not None:
        (d / "runtime.json").write_text(json.dumps(runtime))
    return d


RUNTIME = {"route": "mdistiller_ext engine", "device": "cpu (x86_64)", "amp": "fp32", "channels_last": False,
           "data_path": "device-resident (fast)", "zoo": "standalone", "compile": False, "world_size": 1,
           "torch": "2.14.1", "torchvision": "0.29.1", "mdistiller": "not installed"}


def test_ablations_of_one_method_are_not_pooled(tmp_path):
    abl = "configs/cifar100/dhkd/ablations/res32x4_res8x4"
    runs = [write_run_from_config(tmp_path, "main", "configs/cifar100/dhkd/res32x4_res8x4.yaml", 77.0),
            write_run_from_config(tmp_path, "one_head", f"{abl}/ce_bkl_one_head.yaml", 39.5),
            write_run_from_config(tmp_path, "ce_only", f"{abl}/ce_only.yaml", 73.0)]
    rows = aggregate.summarize([aggregate.read_run(str(d)) for d in runs], reference.load())
    assert sorted((r.method, r.n, r.stats["best_top1"][0]) for r in rows) == [
        ("dhkd", 1, 39.5), ("dhkd", 1, 73.0), ("dhkd", 1, 77.0)]
    labels = {r.stats["best_top1"][0]: r.label for r in rows}
    assert "ce_bkl_one_head" in labels[39.5] and "DHKD.HEAD=none" in labels[39.5]
    assert "ce_only" in labels[73.0] and "DHKD.ALPHA=0.0" in labels[73.0]
    # the CSV keeps what tells the rows apart, and the bar chart names each row's seeds
    import csv

    aggregate.write_csv(rows, str(tmp_path / "t.csv"))
    recs = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert {r["method"] for r in recs} == {"dhkd"} and len({r["label"] for r in recs}) == 3
    assert {float(r["best_top1_mean"]): r["label"] for r in recs} == labels
    assert aggregate.bars_title(rows) == "one seed per bar (no spread)"


def test_runs_pool_over_seeds_only(tmp_path):
    kd = "configs/cifar100/kd/res56_res20.yaml"
    runs = [write_run_from_config(tmp_path, f"s{s}", kd, 70.0 + s, ["EXT.SEED", str(s), "EXT.PROGRESS", "False"], RUNTIME)
            for s in (0, 1)]
    runs.append(write_run_from_config(tmp_path, "longer", kd, 50.0, ["SOLVER.EPOCHS", "3"], RUNTIME))
    runs.append(write_run_from_config(tmp_path, "pil", kd, 71.5, ["EXT.SEED", "2"],
                                      dict(RUNTIME, data_path="DataLoader (PIL transforms)")))
    results = [aggregate.read_run(str(d)) for d in runs]
    rows = aggregate.summarize(results, reference.load())
    by_n = sorted((r.n, r.stats["best_top1"][0], r.variant) for r in rows)
    assert [n for n, _, _ in by_n] == [1, 1, 2]
    assert by_n[2][1] == pytest.approx(70.5)  # seeds 0 and 1 (EXT.PROGRESS changes no number)
    assert any("SOLVER.EPOCHS=3" in v for _, _, v in by_n)
    assert any("data_path=DataLoader (PIL transforms)" in v for _, _, v in by_n)
    assert all("fp32" in r.runtime for r in rows)
    pooled = aggregate.summarize(results, reference.load(), pool_runtimes=True)
    assert sorted(r.n for r in pooled) == [1, 3]


def test_runs_from_before_an_option_existed_or_a_default_changed_pool_with_todays(tmp_path):
    # the CIFAR-10 study's KD seeds 0-2 predate EXT.VAL_SPLIT and AEKT.SERIAL_LR and saved AEKT's old
    # defaults; seeds 3-4 have today's: the same KD experiment, one row of five seeds
    kd, aekt = "configs/cifar10/kd/res20_res8.yaml", "configs/cifar10/aekt/res20_res8.yaml"
    old = write_run_from_config(tmp_path, "old", kd, 70.0, ["AEKT.W_MAX", "10.0", "AEKT.RATIO_NORM", "clip"], RUNTIME)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    del saved["EXT"]["VAL_SPLIT"], saved["AEKT"]["SERIAL_LR"]
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    runs = [old, write_run_from_config(tmp_path, "new", kd, 71.0, ["EXT.SEED", "1"], RUNTIME),
            # controls: what does change a KD number, and AEKT's own options on an AEKT run
            write_run_from_config(tmp_path, "held_out", kd, 60.0, ["EXT.VAL_SPLIT", "100"], RUNTIME),
            write_run_from_config(tmp_path, "kd_t", kd, 61.0, ["KD.TEMPERATURE", "2"], RUNTIME),
            write_run_from_config(tmp_path, "aekt_old", aekt, 62.0, ["AEKT.W_MAX", "10.0"], RUNTIME),
            write_run_from_config(tmp_path, "aekt_new", aekt, 63.0, [], RUNTIME)]
    rows = aggregate.summarize([aggregate.read_run(str(d)) for d in runs], reference.load())
    assert sorted((r.method, r.n, r.stats["best_top1"][0]) for r in rows) == [
        ("aekt", 1, 62.0), ("aekt", 1, 63.0), ("kd", 1, 60.0), ("kd", 1, 61.0), ("kd", 2, 70.5)]
    pooled = next(r for r in rows if r.n == 2)
    assert "AEKT" not in pooled.variant and "<absent>" not in pooled.variant
    assert any("AEKT.W_MAX=10.0" in r.variant for r in rows if r.method == "aekt")


def test_imagenet_rows_compare_the_last_epoch_with_published(tmp_path):
    d = make_run(tmp_path, "p", "r18", {1: 70.0, 2: 72.5, 3: 71.0}, cfg=cfg("dkd", "ResNet34", "ResNet18", 0, 3, "imagenet"))
    row, = aggregate.summarize([aggregate.read_run(str(d))], reference.load())
    assert row.reference is not None and row.compared_metric == "last_top1"
    assert row.delta == pytest.approx(71.0 - row.reference)


def test_probe_plot_from_the_runs_csv(tmp_path):
    runs = []
    for s in (0, 1):
        d = make_run(tmp_path, "p", f"kd{s}", {1: 60.0, 2: 61.0}, cfg=cfg("kd", "resnet56", "resnet20", s, 2))
        (d / "grad_probe.csv").write_text("epoch,step,global_step,cos,norm_ratio\n"
                                          "1,0,0,-0.2,1.0\n1,100,100,0.0,1.0\n2,0,150,0.3,1.0\n2,100,250,nan,nan\n")
        runs.append(d)
    rows = aggregate.summarize([aggregate.read_run(str(d)) for d in runs], reference.load())
    assert aggregate.probe_epochs(str(runs[0])) == {1: [-0.2, 0.0], 2: [0.3]}
    written = aggregate.plot_probe(rows, lambda ds, p: str(tmp_path / f"probe_{ds}_{p}.png"))
    assert written == [str(tmp_path / "probe_cifar100_res56_res20.png")]
    with Image.open(written[0]) as im:
        im.load()
        assert im.size == (800, 500)
    plain = make_run(tmp_path, "q", "dkd0", {1: 60.0}, cfg=cfg("dkd", "resnet56", "resnet20", 0, 1))
    assert aggregate.plot_probe(aggregate.summarize([aggregate.read_run(str(plain))], reference.load()),
                                lambda ds, p: str(tmp_path / "none.png")) == []


def test_dry_run_says_not_run_yet_and_warns_about_missing_teachers(tmp_path):
    tool = [sys.executable, str(ROOT / "tools/compare.py"), "--dataset", "cifar10", "--methods", "kd", "dhkd",
            "--pairs", "res20_res8", "--seeds", "0", "--set", "EXT.CKPT_ROOT", "nowhere", "LOG.PREFIX", "out"]
    r = subprocess.run(tool + ["--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("not run yet") == 2 and "missing" not in r.stdout
    assert r.stdout.count("warning: no cifar10 teacher checkpoint for resnet20") == 2
    assert "2 of 2 runs need a teacher that does not exist yet" in r.stderr
    assert sorted(tmp_path.iterdir()) == []  # a dry run writes nothing: no configs, logs, run or report folders


def test_teachers_are_listed_apart_from_the_methods(tmp_path):
    teacher = make_run(tmp_path, "p", "t", {1: 80.0}, cfg=cfg("none", "resnet20", "resnet20", 0, 1, "cifar10"))
    student = make_run(tmp_path, "p", "v", {1: 60.0}, cfg=cfg("none", "resnet20", "resnet8", 0, 1, "cifar10"))
    kd = make_run(tmp_path, "p", "k", {1: 65.0}, cfg=cfg("kd", "resnet20", "resnet8", 0, 1, "cifar10"))
    rows = aggregate.summarize([aggregate.read_run(str(d)) for d in (teacher, student, kd)], reference.load())
    assert sorted((r.method, r.pair) for r in rows) == [("kd", "res20_res8"), ("teacher", "resnet20"),
                                                        ("vanilla", "res20_res8")]
    text = aggregate.write_markdown(rows, [], reference.load(), str(tmp_path / "c.md"))
    table, teachers = text.split("Teachers")
    assert "resnet20->resnet20" not in text and "| teacher |" not in table
    assert "| cifar10 | res20_res8 | vanilla | 1 |" in table and "| cifar10 | resnet20 | 1 | 80.00" in teachers


# a stand-in for a training run: records when it ran and its OMP_NUM_THREADS, then writes a finished
# worklog (or fails); the scheduler under test neither knows nor cares what the command does
FAKE_RUN = """
import os, sys, time
from mdistiller_ext.runs.worklog import best_line, epoch_block
run_dir, stamp, seconds, rc = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
start = time.time(); time.sleep(seconds)
with open(stamp, "w") as f:
    f.write(f"{start} {time.time()} {os.environ.get('OMP_NUM_THREADS', '')} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
if rc < 0:
    os.kill(os.getpid(), -rc)  # stopped from outside, as a machine going down stops it
if rc:
    print("boom: this run failed"); sys.exit(rc)
os.makedirs(run_dir, exist_ok=True)
with open(os.path.join(run_dir, "worklog.txt"), "w") as f:
    f.write(epoch_block(1, 0.05, {"test_acc": 50.0}) + best_line(50.0))
"""


def scheduled(tmp_path, monkeypatch, jobs, failing=(), seconds=None, gpus=(), halt=None, signalled=()):
    """A teacher, two students that learn from it, and an independent run, executed by sweep.execute."""
    config = str(ROOT / "configs" / "cifar10" / "kd" / "res20_res8.yaml")
    teacher_dir = str(tmp_path / "runs" / "teacher")
    specs = [sweep.RunSpec("cifar10", "kd", "res20_res8", seed, config,
                           ["EXT.SEED", str(seed), "EXT.TEACHER_CKPT", f"{teacher_dir}/student_best"],
                           str(tmp_path / "runs" / f"kd{seed}")) for seed in (0, 1)]
    specs.insert(0, sweep.RunSpec("cifar10", "vanilla", "resnet20", 0, config, ["EXT.SEED", "0"], teacher_dir, "teacher"))
    specs.append(sweep.RunSpec("cifar10", "vanilla", "res20_res8", 7, config, ["EXT.SEED", "7"],
                               str(tmp_path / "runs" / "alone"), "alone"))
    seconds = seconds or {"teacher": 1.0, "alone": 2.0}

    def command(spec, state):
        name = os.path.basename(spec.run_dir)
        return [sys.executable, "-c", FAKE_RUN, spec.run_dir, str(tmp_path / f"{name}.stamp"),
                str(seconds.get(name, 0.3)),
                "3" if name in failing else str(-int(signal.SIGTERM)) if name in signalled else "0"]

    monkeypatch.setattr(sweep, "command", command)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    lines = []
    report = sweep.execute(specs, str(tmp_path / "logs"), echo=lines.append, jobs=jobs, gpus=gpus, halt=halt)
    stamps = {}
    for p in tmp_path.glob("*.stamp"):
        start, end, threads, gpu = p.read_text().split(" ")
        stamps[p.stem] = (float(start), float(end), threads, gpu)
    return specs, report, stamps, lines


def test_parallel_sweep_waits_for_the_teacher_and_overlaps_the_rest(tmp_path, monkeypatch):
    specs, report, t, lines = scheduled(tmp_path, monkeypatch, jobs=2)
    assert not report["failed"] and len(report["ran"]) == 4
    # the students start only once the teacher has finished; the independent run overlaps the teacher
    assert t["kd0"][0] >= t["teacher"][1] and t["kd1"][0] >= t["teacher"][1]
    assert t["alone"][0] < t["teacher"][1]
    assert {v[2] for v in t.values()} == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert all(sweep.status(s) == "finished" for s in specs)
    assert sum("done" in line for line in lines) == 4
    # run again: everything is skipped
    report = sweep.execute(specs, str(tmp_path / "logs"), echo=lambda m: None, jobs=2)
    assert len(report["skipped"]) == 4 and not report["ran"]


def test_runs_side_by_side_share_the_gpus_out(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _, report, t, lines = scheduled(tmp_path, monkeypatch, jobs=2, gpus=["3", "5"])
    assert not report["failed"]
    # the teacher and the independent run overlap: each has a GPU of its own
    assert {t["teacher"][3], t["alone"][3]} == {"3", "5"}
    assert all(v[3] in ("3", "5") for v in t.values()) and any("on GPU 5" in line for line in lines)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert sweep.visible_gpus() == ["2", "7"]


def test_sequential_sweep_runs_one_at_a_time_in_plan_order(tmp_path, monkeypatch):
    _, report, t, _ = scheduled(tmp_path, monkeypatch, jobs=1, seconds={"teacher": 0.3, "alone": 0.3})
    order = sorted(t, key=lambda k: t[k][0])
    assert order == ["teacher", "kd0", "kd1", "alone"]
    assert all(t[a][1] <= t[b][0] for a, b in zip(order, order[1:]))
    assert {v[2] for v in t.values()} == {""}  # one job: the threads are left to torch


def test_a_failed_teacher_fails_its_students_without_running_them(tmp_path, monkeypatch):
    _, report, t, lines = scheduled(tmp_path, monkeypatch, jobs=2, failing={"teacher"})
    failed = {spec.run_dir.rsplit(os.sep, 1)[1]: why for spec, _, why, _ in report["failed"]}
    assert failed["teacher"] == "boom: this run failed"
    assert failed["kd0"] == failed["kd1"] == "its teacher run teacher resnet20 seed 0 failed"
    assert set(t) == {"teacher", "alone"} and [s.run_dir for s in report["ran"]] == [str(tmp_path / "runs" / "alone")]
    with pytest.raises(Exception, match="at least 1"):
        sweep.execute([], str(tmp_path / "logs"), jobs=0)


def test_a_halt_stops_the_sweep_after_the_run_it_names_and_lets_the_running_ones_finish(tmp_path, monkeypatch):
    """sweep.execute asks ``halt`` about every run that ends in the call: one at a time, nothing starts after
    the run it names; two at a time, the run beside it still finishes. A failure halts only where the rule
    says so."""
    asked = []

    def after_kd0(spec, ok):
        asked.append((os.path.basename(spec.run_dir), ok))
        return "kd0 is off" if spec.run_dir.endswith("kd0") else None

    def halting(jobs, halt, **kw):
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        root.mkdir()
        return scheduled(root, monkeypatch, jobs=jobs, halt=halt, **kw)

    specs, report, t, lines = halting(1, after_kd0, seconds={"teacher": 0.2, "alone": 0.2})
    assert asked == [("teacher", True), ("kd0", True)] and set(t) == {"teacher", "kd0"}
    assert [(s.run_dir, why) for s, why in report["halted"]] == [(specs[1].run_dir, "kd0 is off")]
    assert report["not_started"] == specs[2:] and "sweep halted after kd res20_res8 seed 0: kd0 is off" in lines[-1]
    asked.clear()
    # two at a time: the independent run started beside the teacher and is not cut short by the halt; whether
    # kd1 started beside kd0 before the halt depends on the timing, but every run either ran to its end or
    # never started
    specs, report, t, _ = halting(2, after_kd0, seconds={"teacher": 0.3, "alone": 2.0})
    ran = {os.path.basename(s.run_dir) for s in report["ran"]}
    left = {os.path.basename(s.run_dir) for s in report["not_started"]}
    assert {"teacher", "kd0", "alone"} <= ran and ran | left == {"teacher", "kd0", "kd1", "alone"}
    assert set(t) == ran and not ran & left and len(report["halted"]) == 1
    # a failed teacher: its students fail without running; the halt is asked once and names the teacher
    asked.clear()
    _, report, t, _ = halting(1, lambda spec, ok: asked.append(ok) or (None if ok else "it failed"),
                              failing={"teacher"})
    assert asked == [False] and set(t) == {"teacher"} and len(report["not_started"]) == 3
    # a run stopped by SIGTERM is an interruption, not a finding: reported failed, never asked about
    asked.clear()
    _, report, t, _ = halting(1, lambda spec, ok: asked.append(ok) or (None if ok else "it failed"),
                              signalled={"alone"})
    assert asked == [True, True, True] and not report["halted"]
    assert [(os.path.basename(spec.run_dir), rc) for spec, rc, _, _ in report["failed"]] == [("alone", -signal.SIGTERM)]


def test_a_sweep_halts_on_a_run_off_its_published_number_and_stays_halted_until_told(tmp_path, monkeypatch):
    """halt: {off_published: 1.5}: KD res56 -> res20 landing 2.66 below mdistiller's 70.66 stops the sweep
    (its HALTED.txt keeps a later start from going on); deleting it goes on, and the finished run is not
    asked about again."""
    from mdistiller_ext.cli import compare
    from mdistiller_ext.runs.naming import load_config

    acc = {0: 68.0, 1: 70.2}

    def command(spec, state):
        os.makedirs(spec.run_dir, exist_ok=True)
        Path(spec.run_dir, "config.yaml").write_text(load_config(spec.config, spec.overrides).dump())
        return [sys.executable, "-c", "import sys; from mdistiller_ext.runs.worklog import best_line, epoch_block; "
                "open(sys.argv[1] + '/worklog.txt', 'w').write(epoch_block(1, 0.05, {'test_acc': float(sys.argv[2])}) "
                "+ best_line(float(sys.argv[2])))", spec.run_dir, str(acc[spec.seed])]

    monkeypatch.setattr(sweep, "command", command)
    out = tmp_path / "out"
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({
        "out": str(out), "replace_report": True, "halt": {"on_failure": True, "off_published": 1.5},
        "runs": [{"config": str(ROOT / "configs/cifar100/kd/res56_res20.yaml"), "seeds": [0, 1],
                  "set": {"LOG.PREFIX": str(tmp_path / "runs"), "SOLVER.EPOCHS": 1}}]}))
    assert compare.main(["--sweep", str(spec)]) == 1
    halted = (out / "HALTED.txt").read_text()
    assert halted.startswith("the sweep halted after kd,resnet56,resnet20 res56_res20 seed 0: best top-1 68.00 is -2.66 from the "
                             "published 70.66") and "not started: kd,resnet56,resnet20 res56_res20 seed 1" in halted
    assert len(list(tmp_path.glob("runs/*/*/worklog.txt"))) == 1  # seed 1 never started
    assert compare.main(["--sweep", str(spec)]) == 2  # refused while HALTED.txt is there
    (out / "HALTED.txt").unlink()
    assert compare.main(["--sweep", str(spec)]) == 0 and not (out / "HALTED.txt").exists()
    assert len(list(tmp_path.glob("runs/*/*/worklog.txt"))) == 2
    # a run with no published number is never off it; a bad rule is refused in one line
    refs = reference.load()
    abl = write_run_from_config(tmp_path / "abl", "one_head", "configs/cifar100/dhkd/ablations/res32x4_res8x4/ce_bkl_one_head.yaml", 39.5)
    check = compare.halt_check({"off_published": 1.5}, refs)
    assert check(sweep.RunSpec("cifar100", "dhkd", "res32x4_res8x4", 0, "", [], str(abl)), True) is None
    assert check(sweep.RunSpec("cifar100", "dhkd", "res32x4_res8x4", 0, "", [], str(abl)), False) is None
    assert compare.halt_check({}, refs) is None
    spec.write_text(yaml.safe_dump({"out": str(out), "halt": {"off_publish": 1}, "runs": []}))
    assert compare.main(["--sweep", str(spec)]) == 2


def test_runs_are_found_below_project_folders_and_an_empty_input_writes_nothing(tmp_path):
    for project, run in (("cifar10_kd", "kd,resnet20,resnet8"), ("cifar10_dkd", "dkd,resnet20,resnet8")):
        d = tmp_path / "output" / project / run
        d.mkdir(parents=True)
        (d / "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 50.0}) + best_line(50.0))
    expected = sorted(str(p) for p in (tmp_path / "output").glob("*/*"))
    assert aggregate.find_runs([str(tmp_path / "output")]) == expected
    assert aggregate.find_runs(str(p) for p in (tmp_path / "output").glob("*")) == expected
    assert aggregate.find_runs(expected) == expected
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "compare.py"), "--runs", str(tmp_path / "empty"),
                        "--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no run directories match" in r.stderr and not (tmp_path / "report").exists()


def test_a_run_made_without_typing_the_default_seed_is_that_seeds_planned_run(tmp_path):
    """The quickstart's student was trained without EXT.SEED (default 0): a sweep planning seed 0 with the
    same overrides recognises it by its config, not its name, and does not plan it again; seed 1 and another
    epoch count are other runs."""
    from mdistiller_ext.cli import sweep
    from mdistiller_ext.config import write_config
    from mdistiller_ext.runs.naming import experiment_name, load_config
    from mdistiller_ext.runs.worklog import best_line, epoch_block

    cfg_file = str(ROOT / "configs/cifar10/dhkd/res20_res8.yaml")
    typed = ["SOLVER.EPOCHS", "5", "EXT.TRAIN_SUBSET", "10000", "LOG.PREFIX", str(tmp_path / "output")]
    cfg = load_config(cfg_file, typed)
    run = tmp_path / "output" / experiment_name(cfg, typed)
    run.mkdir(parents=True)
    write_config(str(run), cfg)
    (run / "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 50.0}) + best_line(50.0))
    planned = sweep.plan("cifar10", ["dhkd"], ["res20_res8"], [0, 1], typed, configs_root=str(ROOT / "configs"))
    assert "EXT.SEED" not in os.path.basename(planned[0].run_dir) and planned[0].run_dir == str(run)
    assert sweep.status(planned[0]) == "finished"
    assert planned[1].run_dir != str(run) and sweep.status(planned[1]) == "missing"
    longer = sweep.plan("cifar10", ["dhkd"], ["res20_res8"], [0], ["SOLVER.EPOCHS", "6", *typed[2:]],
                        configs_root=str(ROOT / "configs"))
    assert longer[0].run_dir != str(run)


def test_the_table_says_what_runs_changed_from_the_shipped_config_and_plots_say_what_one_seed_is(tmp_path, monkeypatch):
    """The quickstart's shortened run shows SOLVER.EPOCHS=5, EXT.TRAIN_SUBSET=10000 in its row; the shipped
    recipe shows '-'; one seed per line is said in the curves' title; bars.png draws the teacher the runs
    recorded (its accuracy from runtime.json)."""
    teacher = {"path": "t.pth", "sha256": "ab" * 32, "test_acc": 54.06}
    short = write_run_from_config(tmp_path, "short", "configs/cifar10/dhkd/res20_res8.yaml", 53.0,
                                  ["SOLVER.EPOCHS", "5", "EXT.TRAIN_SUBSET", "10000"], dict(RUNTIME, teacher=teacher))
    shipped = write_run_from_config(tmp_path, "shipped", "configs/cifar10/kd/res20_res8.yaml", 52.0,
                                    ["SOLVER.EPOCHS", "240"], dict(RUNTIME, teacher=teacher))
    rows = aggregate.summarize([aggregate.read_run(str(d)) for d in (short, shipped)], reference.load())
    changes = {r.method: aggregate.recipe_changes(r) for r in rows}
    assert changes == {"dhkd": "EXT.TRAIN_SUBSET=10000, SOLVER.EPOCHS=5", "kd": "-"}
    text = aggregate.write_markdown(rows, [], reference.load(), str(tmp_path / "comparison.md"))
    assert "| beyond the shipped config |" in text and "EXT.TRAIN_SUBSET=10000, SOLVER.EPOCHS=5 |" in text
    assert [aggregate.teacher_accuracies(r) for r in rows] == [[54.06], [54.06]]
    titles = []
    real = aggregate._plot_per_epoch
    monkeypatch.setattr(aggregate, "_plot_per_epoch", lambda rows, path, series, ylabel, title, **k: titles.append(title) or [])
    aggregate.plot_curves(rows, lambda d, p: str(tmp_path / "c.png"))
    assert titles == ["test accuracy (one run per line)"]
    monkeypatch.setattr(aggregate, "_plot_per_epoch", real)
    drawn = []
    import matplotlib.axes

    real_annotate = matplotlib.axes.Axes.annotate
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", lambda self, text, *a, **k: drawn.append(text) or real_annotate(self, text, *a, **k))
    assert aggregate.plot_bars(rows, str(tmp_path / "bars.png"))
    assert [t for t in drawn if t.startswith("teacher")] == ["teacher 54.1"]  # once: one teacher for the pair


def test_published_numbers_of_the_new_baselines_and_of_an_ablation_with_its_own():
    """DIST, TTM, WTTM and KD + logit standardisation print their published CIFAR-100 numbers with their sources;
    the KD ablation logit_stand takes KD + LS's number, never KD's, even as the only row."""
    refs = reference.load()
    assert refs.lookup("cifar100", "res56_res20", "dist").top1 == 71.75
    assert (refs.lookup("cifar100", "res32x4_res8x4", "ttm").top1, refs.lookup("cifar100", "res56_res20", "wttm").top1) == (76.17, 71.92)
    assert refs.lookup("cifar100", "res56_res20", "kd_logit_stand").source == "lskd_readme"
    abl = write_run_from_config(tmp_path := Path(__import__("tempfile").mkdtemp()), "ls",
                                "configs/cifar100/kd/ablations/res32x4_res8x4/logit_stand.yaml", 76.0)
    rows = aggregate.summarize([aggregate.read_run(str(abl))], refs)
    assert rows[0].reference == 76.62 and rows[0].source == "lskd_readme"
    other = write_run_from_config(tmp_path, "ce", "configs/cifar100/dhkd/ablations/res32x4_res8x4/ce_only.yaml", 73.0)
    assert aggregate.summarize([aggregate.read_run(str(other))], refs)[0].reference is None


def test_every_run_with_its_teacher_cache_hits_and_cost_finished_or_not(tmp_path):
    """The per-run table of comparison.md: a long run half-way shows how far it got, what it cost so far and, at
    the rate of its recorded epochs (2 epochs, 180 CPU-s and 360 wall-s: 90 and 180 s each), what all 240 would."""
    def run(name, seed, epochs, expected, hits, finished, cost, teacher):
        d = tmp_path / "p" / name
        d.mkdir(parents=True)
        text = "".join(epoch_block(e, 0.05, {"test_acc": 50.0 + e, **({"teacher_cache_hit": hits[e - 1]} if hits else {})})
                       for e in range(1, epochs + 1))
        (d / "worklog.txt").write_text(text + (best_line(50.0 + epochs) if finished else ""))
        (d / "config.yaml").write_text(yaml.safe_dump(cfg("kd", "resnet56", "resnet20", seed, expected)))
        (d / "runtime.json").write_text(json.dumps({"teacher": teacher, "cost": cost}))
        return aggregate.read_run(str(d))

    teacher = {"path": "../shared/teachers/cifar100/resnet56.pth", "test_acc": 72.61}
    done = run("kd0", 0, 2, 2, [0.0, 50.0], True, [{"epochs": [1, 2], "wall_s": 7200.0, "cpu_s": 5400.0}], teacher)
    half = run("kd1", 1, 3, 240, None, False, [{"epochs": [2, 3], "wall_s": 360.0, "cpu_s": 180.0}], "t.pth")
    lines = aggregate.run_records([half, done])
    assert lines[-2:] == [
        "| kd0 | 0 | 2/2 | 52.00 (2) | 52.00 | resnet56.pth (72.61) | 25.0% | 1.50 | 2.00 |",
        "| kd1 | 1 | 3/240 | 53.00 (3) | 53.00 | t.pth | - | 0.05 (1 of 3 epochs not recorded); 240 epochs at this "
        "rate: 6.00 | 0.10 (1 of 3 epochs not recorded); 240 epochs at this rate: 12.00 |"]
    # and the comparison page carries it, the unfinished run included
    row, = aggregate.summarize([done], reference.load())
    text = aggregate.write_markdown([row], [half], reference.load(), str(tmp_path / "c.md"))
    assert lines[-1] in text and lines[-2] in text


def test_a_folder_of_runs_half_way_gets_a_page_of_how_far_each_got(tmp_path):
    d = tmp_path / "runs" / "p" / "dhkd,resnet56,resnet20"
    d.mkdir(parents=True)
    (d / "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 20.0}) + epoch_block(2, 0.05, {"test_acc": 31.5}))
    (d / "config.yaml").write_text(yaml.safe_dump(cfg("dhkd", "resnet56", "resnet20", 0, 240)))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "compare.py"), "--runs", str(tmp_path / "runs"),
                        "--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "report" / "comparison.md").read_text()
    assert page.startswith("No run has finished yet.")
    assert "| dhkd,resnet56,resnet20 | 0 | 2/240 | 31.50 (2) | 31.50 | - | - | not recorded | not recorded |" in page
    assert "incomplete: " in page and not (tmp_path / "report" / "bars.png").exists()

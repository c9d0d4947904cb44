"""The GPU check: tiny real runs through every path of the engine, one PASS/FAIL line each.

python benchmarks/gpu_check.py [--device cuda|cpu] [--keep DIR] [--no-bench]

No network and no ../shared: it writes its own CIFAR-10-format data (torchvision's pickles) and trains
its own teacher. Each check runs tools/train.py (or tools/eval.py, torchrun) in a subprocess and
asserts what the run recorded: it finished, its losses are finite, and runtime.json says the
precision, layout, data path and teacher-logit source the check asked for. On CUDA it then runs
benchmarks/step_time.py and epoch_time.py and writes their rows into benchmarks/RESULTS.md.
``--device cpu`` runs the same checks on the CPU (CI does, so the script cannot rot); the checks
that need two GPUs or mdistiller with CUDA say SKIP with the reason. Exit status: 1 if any check failed.
"""
import argparse
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_cifar10(root: str, per_class: int = 12, test_per_class: int = 4) -> None:
    """torchvision's cifar-10-batches-py layout: learnable toy images (a colour per class plus noise)."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    colours = rng.randint(30, 225, size=(10, 3))

    def images(n: int):
        y = np.repeat(np.arange(10), n)
        x = np.clip(colours[y][:, :, None, None] + rng.randint(-25, 25, size=(len(y), 3, 32, 32)), 0, 255)
        return x.astype(np.uint8).reshape(len(y), -1), y.tolist()

    x, y = images(per_class)
    parts = np.array_split(np.arange(len(y)), 5)
    for i, part in enumerate(parts, 1):
        with open(os.path.join(folder, f"data_batch_{i}"), "wb") as f:
            pickle.dump({"data": x[part], "labels": [y[j] for j in part]}, f)
    tx, ty = images(test_per_class)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({"data": tx, "labels": ty}, f)


class Check:
    def __init__(self, work: str, device: str) -> None:
        self.work, self.device = work, device
        self.results: List[tuple] = []

    def train(self, tag: str, config: str, *opts: str, resume: bool = False, torchrun: int = 0,
              timeout: int = 600) -> subprocess.CompletedProcess:
        cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--cfg", config, "EXPERIMENT.TAG", tag,
               "EXT.DEVICE", self.device if not torchrun else "auto", *opts]
        if resume:
            cmd.append("--resume")
        if torchrun:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)] + cmd[1:]
        return subprocess.run(cmd, cwd=self.work, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def run_dir(self, project: str, tag: str) -> str:
        found = [d for d in os.listdir(os.path.join(self.work, "out", project)) if d.split(",", 1)[0] == tag]
        assert len(found) == 1, f"expected one run directory for {tag}, found {found}"
        return os.path.join(self.work, "out", project, found[0])

    def record(self, name: str, fn: Callable[[], Optional[str]]) -> None:
        start = time.time()
        try:
            skipped = fn()
            status, why = ("SKIP", skipped) if skipped else ("PASS", "")
        except Exception as e:  # a check's failure is its line, not the end of the script
            status, why = "FAIL", f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
        self.results.append((name, status, why))
        print(f"{status} {name} ({time.time() - start:.0f}s){': ' + why if why else ''}", flush=True)


def ok(r: subprocess.CompletedProcess) -> None:
    if r.returncode != 0:
        tail = [line for line in (r.stderr or r.stdout).strip().splitlines() if line.strip()][-1:]
        raise AssertionError(f"exit {r.returncode}: {tail[0] if tail else '(no output)'}")


def finished(run_dir: str) -> Dict[str, object]:
    from mdistiller_ext.runs import worklog

    log = worklog.read(os.path.join(run_dir, "worklog.txt"))
    assert log.finished, "the worklog has no best_acc line"
    for epoch, values in log.epochs.items():
        for k, v in values.items():
            assert math.isfinite(v), f"epoch {epoch}: {k} = {v}"
    with open(os.path.join(run_dir, "runtime.json")) as f:
        return {"log": log, "runtime": json.load(f)}


def expect(info: Dict[str, object], **fields) -> None:
    rt = info["runtime"]
    for k, v in fields.items():
        assert str(rt.get(k)) == str(v), f"runtime.json {k} = {rt.get(k)!r}, expected {v!r}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--keep", default="", help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--no-bench", action="store_true", help="skip the step-time and epoch-time benchmarks")
    args = ap.parse_args()
    import torch

    from mdistiller_ext.host import adapter as host
    from mdistiller_ext.engine.runtime import Machine, resolve_amp

    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL setup: --device cuda but CUDA is not available (run with --device cpu for the CPU checks)")
        return 1
    work = args.keep or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    machine = Machine.current()
    dev = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    print(f"gpu_check on {name} | torch {torch.__version__} | mdistiller {'installed' if host.HAS_MDISTILLER else 'absent'} | work {work}")
    write_cifar10(os.path.join(work, "data"))
    base = {"DATASET": {"TYPE": "cifar10", "NUM_WORKERS": 0, "TEST": {"BATCH_SIZE": 64}},
            "SOLVER": {"EPOCHS": 1, "BATCH_SIZE": 32, "LR": 0.05, "LR_DECAY_STAGES": [5], "TRAINER": "base"},
            "LOG": {"PREFIX": "out"},
            "EXT": {"DATA_ROOT": "data", "DATA_CACHE": "data", "CKPT_ROOT": "ckpts", "PROGRESS": False,
                    "DOWNLOAD": False, "TEACHER_MIN_ACC": 0.0}}  # a 2-epoch toy teacher: the checks are about paths
    import yaml

    def config(name: str, src: str, **patch) -> str:
        with open(os.path.join(ROOT, "configs", src)) as f:
            cfg = yaml.safe_load(f)
        for section, values in {**base, **patch}.items():
            cfg.setdefault(section, {}).update(values if section not in base else {**base[section], **values})
        path = os.path.join(work, name)
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        return name

    c = Check(work, args.device)
    teacher_cfg = config("teacher.yaml", "cifar10/vanilla/resnet20.yaml",
                         DISTILLER={"TEACHER": "resnet8", "STUDENT": "resnet8"}, EXT={"EXPORT_TEACHER": True})
    kd = config("kd.yaml", "cifar10/kd/res20_res8.yaml", DISTILLER={"TEACHER": "resnet8"})
    dkd = config("dkd.yaml", "cifar10/dkd/res20_res8.yaml", DISTILLER={"TEACHER": "resnet8"}, DKD={"WARMUP": 0.5})
    dhkd = config("dhkd.yaml", "cifar10/dhkd/res20_res8.yaml", DISTILLER={"TEACHER": "resnet8"})
    aekt = config("aekt.yaml", "cifar10/aekt/res20_res8.yaml", DISTILLER={"TEACHER": "resnet8"}, AEKT={"WARMUP": 0.5})
    auto_amp = {None: "fp32", torch.bfloat16: "bf16"}[resolve_amp("auto", dev, machine)]

    def teacher():
        ok(c.train("teacher", teacher_cfg, "SOLVER.EPOCHS", "2"))
        finished(c.run_dir("cifar10_teachers", "teacher"))
        assert os.path.isfile(os.path.join(work, "ckpts", "cifar10_teachers", "resnet8_vanilla", "ckpt_epoch_2.pth"))

    c.record("teacher (vanilla, exported)", teacher)

    def kd_run(tag: str, *opts: str, **fields):
        def check():
            ok(c.train(tag, kd, *opts))
            expect(finished(c.run_dir("cifar10_kd", tag)), **fields)
        return check

    c.record("AMP auto", kd_run("amp_auto", amp=auto_amp))
    c.record("AMP bf16", kd_run("amp_bf16", "EXT.AMP", "bf16", amp="bf16"))
    c.record("AMP fp16 (gradient scaler)", kd_run("amp_fp16", "EXT.AMP", "fp16", amp="fp16"))
    c.record("AMP off", kd_run("amp_off", "EXT.AMP", "off", amp="fp32"))
    c.record("channels-last on", kd_run("cl_on", "EXT.CHANNELS_LAST", "on", channels_last=True))
    c.record("channels-last off", kd_run("cl_off", "EXT.CHANNELS_LAST", "off", channels_last=False))
    c.record("deterministic kernels (CUBLAS_WORKSPACE_CONFIG set before CUDA starts)",
             kd_run("deterministic", "EXT.DETERMINISTIC", "True"))
    c.record("host-style data path (DataLoader)", kd_run("dataloader", "EXT.FAST_DATA", "off",
                                                          data_path="DataLoader (PIL transforms)"))
    c.record("fast data path", kd_run("fastdata", "EXT.FAST_DATA", "on", data_path="device-resident (fast)"))

    def method(tag: str, cfg: str, project: str, *opts: str):
        def check():
            ok(c.train(tag, cfg, *opts))
            finished(c.run_dir(project, tag))
        return check

    c.record("DKD (fractional warm-up)", method("dkd", dkd, "cifar10_dkd"))
    c.record("DHKD + gradient alignment", method("align", dhkd, "cifar10_dhkd", "SOLVER.TRAINER", "align"))
    c.record("AEKT cls_then_kd", method("aekt_cls", aekt, "cifar10_aekt", "AEKT.SERIAL", "cls_then_kd"))
    c.record("AEKT kd_then_cls", method("aekt_kd", aekt, "cifar10_aekt", "AEKT.SERIAL", "kd_then_cls"))

    def probe():
        ok(c.train("probe", dhkd, "EXT.GRAD_PROBE_EVERY", "1", "EXT.AMP", "fp16"))
        run = c.run_dir("cifar10_dhkd", "probe")
        info = finished(run)
        assert os.path.isfile(os.path.join(run, "grad_probe.csv")) and "grad_cos" in info["log"].epochs[1]

    c.record("gradient-conflict probe (fp16)", probe)

    def compile_run():
        ok(c.train("compiled", dhkd, "EXT.COMPILE", "True", "SOLVER.TRAINER", "align", "EXT.GRAD_PROBE_EVERY", "2",
                   timeout=900))
        expect(finished(c.run_dir("cifar10_dhkd", "compiled")), compile=True)

    c.record("compile (with alignment and the probe)", compile_run)

    def cache():
        ok(c.train("cache_fill", kd, "EXT.TEACHER_CACHE", "on"))
        info = finished(c.run_dir("cifar10_kd", "cache_fill"))
        assert str(info["runtime"]["teacher_logits"]).startswith("cache "), info["runtime"]["teacher_logits"]
        ok(c.train("cache_hit", kd, "EXT.TEACHER_CACHE", "on"))
        hit = finished(c.run_dir("cifar10_kd", "cache_hit"))["log"].epochs[1]["teacher_cache_hit"]
        assert hit == 100.0, f"the second run hit {hit}% of its views"

    c.record("teacher-logit cache (fill, then every view a hit)", cache)

    def resume():
        ok(c.train("resume", dhkd))
        ok(c.train("resume", dhkd, "SOLVER.EPOCHS", "2", resume=True))
        ok(c.train("resume", dhkd, "SOLVER.EPOCHS", "3", "EXT.DEVICE", "cpu", resume=True))  # that checkpoint on the CPU
        info = finished(c.run_dir("cifar10_dhkd", "resume"))
        assert list(info["log"].epochs) == [1, 2, 3]
        assert info["runtime"]["resumed"][-1]["device"].startswith("cpu")

    c.record(f"resume on {args.device}, then on the CPU", resume)

    def evaluate():
        run = c.run_dir("cifar10_kd", "amp_auto")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "eval.py"), "-c", os.path.join(run, "student_latest"),
                            "--device", args.device], cwd=work, capture_output=True, text=True, timeout=300)
        ok(r)
        logged = finished(run)["log"].epochs[1]["test_acc"]
        assert f"head main: top-1 {logged:.2f}" in r.stdout, f"worklog {logged:.2f}; eval: {r.stdout.strip().splitlines()[-1]}"

    c.record(f"tools/eval.py --device {args.device} reproduces the worklog", evaluate)

    def distributed():
        if args.device != "cuda" or torch.cuda.device_count() < 2:
            return "needs two or more GPUs"
        ok(c.train("ddp", dhkd, "SOLVER.TRAINER", "align", "EXT.SYNC_BN", "True", torchrun=2))
        ok(c.train("ddp", dhkd, "SOLVER.TRAINER", "align", "EXT.SYNC_BN", "True", "SOLVER.EPOCHS", "2", resume=True, torchrun=2))
        info = finished(c.run_dir("cifar10_dhkd", "ddp"))
        assert list(info["log"].epochs) == [1, 2] and info["runtime"]["world_size"] == 2

    c.record("torchrun x2 + alignment + SyncBN + resume", distributed)

    def bn_agreement():
        if args.device == "cuda" and torch.cuda.device_count() < 2:
            return "needs two GPUs (NCCL: one process per GPU)"
        for trainer in ("base", "align"):
            tag = f"bn_{trainer}"
            ok(c.train(tag, dhkd, "SOLVER.TRAINER", trainer, "SOLVER.EPOCHS", "2", torchrun=2))
            run = c.run_dir("cifar10_dhkd", tag)
            log = finished(run)["log"]
            r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "eval.py"), "-c", os.path.join(run, "student_best"),
                                "--device", args.device], cwd=work, capture_output=True, text=True, timeout=300)
            ok(r)
            best = log.epochs[log.best_epoch]["test_acc"]
            assert f"head main: top-1 {best:.2f}" in r.stdout, f"{trainer}: worklog {best:.2f}; eval: {r.stdout.strip().splitlines()[-1]}"

    c.record("torchrun x2: the ranks' BatchNorm buffers agree (eval.py on student_best = the logged best, base and align)",
             bn_agreement)
    c.record("two ranks draw different crops and flips; one process draws as before", lambda: rank_views(dev))
    c.record("AEKT's serialization layer keeps a small delta under bf16 autocast", lambda: serial_bf16(dev))
    c.record("AEKT's batch-mean ratio: 2 processes give one process's gradients", lambda: global_batch_mean(args.device))

    def host_route():
        if not host.HAS_MDISTILLER:
            return "mdistiller is not importable"
        if args.device != "cuda":
            return "mdistiller's trainers need CUDA"
        for tag, trainer in (("host_base", "base"), ("host_align", "align")):
            ok(c.train(tag, dhkd, "EXT.ENGINE", "host", "SOLVER.TRAINER", trainer, "EXT.TEACHER_CACHE", "off"))
            route = str(finished(c.run_dir("cifar10_dhkd", tag))["runtime"]["route"])
            assert route.startswith("mdistiller "), f"runtime.json route = {route!r}"
        # one GPU named by index: DataParallel over that GPU alone (the last one, so N > 0 where there are several)
        last = f"cuda:{torch.cuda.device_count() - 1}"
        ok(c.train("host_one_gpu", dhkd, "EXT.ENGINE", "host", "EXT.DEVICE", last, "EXT.TEACHER_CACHE", "off"))
        finished(c.run_dir("cifar10_dhkd", "host_one_gpu"))

    c.record("mdistiller's trainers (base, align, one GPU by index)", host_route)

    failed = [n for n, s, _ in c.results if s == "FAIL"]
    print(f"gpu_check summary | PASS {sum(s == 'PASS' for _, s, _ in c.results)} | FAIL {len(failed)} | "
          f"SKIP {sum(s == 'SKIP' for _, s, _ in c.results)}" + (f" | failed: {', '.join(failed)}" if failed else ""))
    if args.device == "cuda" and not args.no_bench:
        bench(work)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def rank_views(dev) -> None:
    import torch

    from mdistiller_ext.data.device import DeviceCifarLoader

    images, labels = np.zeros((64, 32, 32, 3), np.uint8), np.arange(64) % 10

    def draws(rank: int, world: int):
        loader = DeviceCifarLoader(images, labels, 16, (0.5,) * 3, (0.25,) * 3, dev, True, 0, rank, world)
        return loader.epoch_draws(torch.Generator().manual_seed(11))

    one, r0, r1 = draws(0, 1), draws(0, 2), draws(1, 2)
    assert not torch.equal(r0[1], r1[1]), "both ranks drew the same crop offsets"
    assert torch.equal(r0[1], one[1][:32]) and torch.equal(r1[1], one[1][32:]), "the ranks' shares are not the global draw"


def serial_bf16(dev) -> None:
    import torch

    from mdistiller_ext.methods.heads import SerializationLayer

    g = torch.Generator().manual_seed(0)
    layer = SerializationLayer(100).to(dev)
    with torch.no_grad():
        layer.delta.copy_(0.003 * torch.randn(100, 100, generator=g))
    z = torch.randn(16, 100, generator=g).to(dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        out = layer(z)
    want = z.double() @ (torch.eye(100, device=dev, dtype=torch.float64) + layer.delta.double()).T
    assert out.dtype == torch.float32, f"the layer ran in {out.dtype}"
    assert (out.double() - want).abs().max() < 1e-3, "the layer's output is not W z"
    assert (out - z).abs().max() > 1e-2, "the layer is the identity: delta was rounded away"


def _mean_worker(rank: int, world: int, init: str, out: str, device: str) -> None:
    """One process of global_batch_mean: AEKT's gradients on its half of a fixed batch under DDP."""
    import torch
    import torch.distributed as dist

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    from torch.nn.parallel import DistributedDataParallel as DDP

    d, x, y = _aekt_case(device)
    model = DDP(d, device_ids=[0] if device == "cuda" else None)
    half = slice(rank * 8, rank * 8 + 8)
    logits, losses = model(image=x[half], target=y[half], epoch=30)
    sum(v.mean() for v in losses.values()).backward()
    if rank == 0:
        torch.save([p.grad.cpu() for p in d.get_learnable_parameters()], out)
    dist.barrier()
    dist.destroy_process_group()


def _aekt_case(device: str):
    import torch

    from mdistiller_ext.host import registration
    from mdistiller_ext.host.standalone.models import cifar_model_dict
    from mdistiller_ext.methods.aekt import AEKT

    torch.manual_seed(0)
    cfg = registration.base_cfg()
    cfg.AEKT.RATIO_NORM = "batch_mean"
    d = AEKT(cifar_model_dict["resnet8"][0](num_classes=10), cifar_model_dict["resnet8"][0](num_classes=10), cfg)
    d.teacher.requires_grad_(False)
    with torch.no_grad():
        d.teacher.fc.weight.mul_(30.0)  # a confident teacher: the ratio varies across the batch
    d.train()
    for m in d.modules():  # per-sample independence: BatchNorm on its running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    g = torch.Generator().manual_seed(1)
    dev = torch.device(device, 0) if device == "cuda" else torch.device("cpu")
    return d.to(dev), torch.randn(16, 3, 32, 32, generator=g).to(dev), torch.randint(0, 10, (16,), generator=g).to(dev)


def global_batch_mean(device: str) -> None:
    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grads.pt")
        mp.spawn(_mean_worker, args=(2, os.path.join(tmp, "init"), out, device), nprocs=2, join=True)
        multi = torch.load(out, weights_only=True)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    d, x, y = _aekt_case(device)
    logits, losses = d(image=x, target=y, epoch=30)
    sum(v.mean() for v in losses.values()).backward()
    worst = max(float((p.grad.cpu() - q).abs().max() / (q.abs().max() + 1e-12))
                for p, q in zip(d.get_learnable_parameters(), multi))
    assert worst < (1e-5 if device == "cpu" else 1e-4), f"gradients differ by {worst:.2e} of their size"


def bench(work: str) -> None:
    """The step-time and epoch-time benchmarks on this GPU, their output appended to RESULTS.md."""
    out = []
    for script, extra in (("step_time.py", ["--steps", "20", "--rounds", "5"]), ("epoch_time.py", [])):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *extra], cwd=os.path.join(ROOT, "benchmarks"),
                           capture_output=True, text=True, timeout=900)
        print(r.stdout[-4000:], flush=True)
        out.append(f"\n### {script} (from gpu_check.sh)\n\n" + (r.stdout if r.returncode == 0 else f"failed: {r.stderr[-2000:]}"))
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.md"), "a") as f:
        f.write("\n## GPU rows written by `bash benchmarks/gpu_check.sh`\n" + "".join(out))


if __name__ == "__main__":
    sys.exit(main())

"""Per-step time (and peak memory) of every registered distillation method this project implements (KD, DKD,
DHKD, DHKD + alignment, AEKT, CRD, DIST, TTM, WTTM, and any --plugin's) against KD.

Same pair, same batch, same device; methods alternate within each round; the median over rounds
is reported with its ratio to KD. Goals: DHKD and AEKT within 1.05x of KD, alignment
within 1.7x. Peak memory: on CUDA, torch's peak allocated memory during one step; on the CPU
(Linux), the growth of the resident-set high-water mark over 3 steps in a fresh process per
method, measured from the built distiller (so it counts activations, gradients and optimizer state).
CRD is built with a CIFAR-100-sized memory bank (50,000 samples) and its step includes drawing the
batch's negatives (data/contrast.py), as a training step does.

python benchmarks/step_time.py [--pair res56_res20] [--batch 64] [--steps 5] [--rounds 5] [--device auto]
                               [--align DHKD] [--plugin my_method.py]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

from common import alternate, header, median, sync

from mdistiller_ext import registry
from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.engine.step import NonFiniteGuard, StepSetup, train_step
from mdistiller_ext.engine.runtime import resolve
from mdistiller_ext.recipes import CIFAR100_PAIRS

METHODS = {}  # row name -> (distiller class, gradient alignment); filled from the registry in main()
NUM_DATA = 50_000  # CRD's memory bank: CIFAR-100's training split


def fill_methods(align: list) -> None:
    """Every registered method this project implements that distils from a teacher (KD first: the
    reference), and a "+align" row for each method named in ``align``."""
    for m in registry.methods():
        if m.distiller is not None and m.needs_teacher:
            METHODS[m.name] = (m.distiller, False)
            if m.name in align:
                METHODS[m.name + "+align"] = (m.distiller, True)


def build(method: str, pair: str, device: torch.device, channels_last: bool, amp=None):
    cls, align = METHODS[method]
    p = CIFAR100_PAIRS[pair]
    cfg = registration.base_cfg()
    m = registry.get(method.split("+")[0])
    if m.recipe is not None:  # the method's own settings for the pair (CRD's embedding sizes come from the models)
        from yacs.config import CfgNode

        recipe = {k: v for k, v in m.recipe("cifar100", pair, p).items() if k != "SOLVER"}
        cfg.merge_from_other_cfg(CfgNode(recipe))
    cfg.AEKT.WARMUP = 0
    torch.manual_seed(0)
    s = host.cifar_model_dict[p.student][0](num_classes=100)
    t = host.cifar_model_dict[p.teacher][0](num_classes=100)
    d = cls(s, t, cfg, NUM_DATA) if m.needs_num_data else cls(s, t, cfg)
    d.teacher.requires_grad_(False)
    d = d.to(device, memory_format=torch.channels_last) if channels_last else d.to(device)
    d.train()
    setup = StepSetup.for_distiller(d, align=align, amp=amp)
    opt = torch.optim.SGD(setup.params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    return d, setup, opt


def contrast_inputs(d, batch: int, device: torch.device):
    """For a method that takes contrastive indices (CRD): a function drawing one step's (index, negatives)
    over a CIFAR-100-sized split, as the engine does every step; None for the others."""
    from mdistiller_ext.data.contrast import NegativeSampler
    from mdistiller_ext.methods.base import hook

    spec = hook(d, "contrast_spec")()
    if spec is None:
        return None
    sampler = NegativeSampler(torch.arange(NUM_DATA) % 100, *spec)
    g = torch.Generator().manual_seed(0)

    def draw():
        index = torch.randint(0, NUM_DATA, (batch,), generator=g).to(device)
        return {"index": index, "contrastive_index": sampler.draw(index, g)}
    return draw


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_peak_child(method: str, pair: str, batch: int) -> None:
    """Runs in its own process: build, reset the RSS high-water mark, 3 steps, print the growth."""
    d, setup, opt = build(method, pair, torch.device("cpu"), False)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 100, (batch,), generator=g)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base = _rss_kib("VmHWM")
    for _ in range(3):
        extra = contrast_inputs(d, batch, torch.device("cpu"))
        train_step(d, opt, x, y, 30, setup, 0, None, None, extra() if extra else None)
    print(json.dumps({"peak_mib": (_rss_kib("VmHWM") - base) / 1024}))


def cpu_peaks(pair: str, batch: int) -> dict:
    if not os.path.exists("/proc/self/clear_refs"):
        return {}
    out = {}
    for m in METHODS:
        # the child sees the plug-ins through MDISTILLER_EXT_PLUGINS (set by --plugin)
        res = subprocess.run([sys.executable, __file__, "--memory-child", m, "--pair", pair, "--batch", str(batch),
                              *(["--align", m.split("+")[0]] if m.endswith("+align") else [])],
                             capture_output=True, text=True)
        if res.returncode != 0:  # e.g. /proc/self/clear_refs not writable here: leave the column n/a
            print(f"peak memory of {m} not measured: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        out[m] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="res56_res20", choices=sorted(CIFAR100_PAIRS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--align", nargs="*", default=["DHKD"], help="methods that also get a gradient-alignment row")
    ap.add_argument("--plugin", action="append", default=[], help="a method module from outside the package")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plugin:
        registration.add_plugins(args.plugin)
    fill_methods(args.align)
    if args.memory_child:
        cpu_peak_child(args.memory_child, args.pair, args.batch)
        return
    cfg = registration.base_cfg()
    cfg.EXT.DEVICE = args.device
    rt = resolve(cfg)  # what a training run of these settings would use on this machine
    device, amp, cl = rt.device, rt.amp, rt.channels_last
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    y = torch.randint(0, 100, (args.batch,), generator=g).to(device)
    built = {m: build(m, args.pair, device, cl, amp) for m in METHODS}
    peak = {}

    def runner(m):
        d, setup, opt = built[m]
        guard = NonFiniteGuard("stop", device)  # a training step includes the non-finite guard
        extra = contrast_inputs(d, args.batch, device)

        def step():
            train_step(d, opt, x, y, 30, setup, 0, guard, None, extra() if extra else None)

        for _ in range(2):  # warm-up (and cudnn autotuning) outside the timing
            step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step()
            peak[m] = torch.cuda.max_memory_allocated(device) / 2 ** 20

        def timed() -> float:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            return (time.perf_counter() - t0) / args.steps

        return timed

    times = alternate({m: runner(m) for m in METHODS}, args.rounds)
    if device.type == "cpu":
        peak = cpu_peaks(args.pair, args.batch)
    print(header(device, f"pair {args.pair} | batch {args.batch} | amp {amp} | {args.rounds} rounds x {args.steps} steps"))
    base = median(times["KD"])
    mem_kind = "CUDA peak allocated" if device.type == "cuda" else "CPU RSS high-water growth"
    print(f"peak memory: {mem_kind} (MiB)")
    print(f"{'method':12s} {'ms/step':>9s} {'x KD':>6s} {'peak MiB':>9s} {'x KD':>6s}")
    for m in METHODS:
        mem = f"{peak[m]:9.0f} {peak[m] / peak['KD']:6.2f}" if m in peak and peak.get("KD") else "      n/a"
        print(f"{m:12s} {1000 * median(times[m]):9.1f} {median(times[m]) / base:6.2f} {mem}")


if __name__ == "__main__":
    main()

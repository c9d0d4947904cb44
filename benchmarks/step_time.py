"""Per-step time (and peak memory) of DHKD, DHKD + alignment and AEKT against KD and DKD.

Same pair, same batch, same device; methods alternate within each round; the median over rounds
is reported with its ratio to KD. Goals (issue): DHKD and AEKT within 1.05x of KD, alignment
within 1.7x.

python benchmarks/step_time.py [--pair res56_res20] [--batch 64] [--steps 5] [--rounds 5] [--device auto]
"""
import argparse
import time

import torch

from common import alternate, header, median, sync

from mdistiller_ext import host
from mdistiller_ext.distillers import AEKT, DHKD, DKD, KD
from mdistiller_ext.engine.trainer import autocast_dtype, forward_backward
from mdistiller_ext.recipes import CIFAR100_PAIRS

METHODS = {"KD": (KD, False), "DKD": (DKD, False), "DHKD": (DHKD, False), "DHKD+align": (DHKD, True),
           "AEKT": (AEKT, False)}


def build(method: str, pair: str, device: torch.device, channels_last: bool):
    cls, align = METHODS[method]
    p = CIFAR100_PAIRS[pair]
    cfg = host.base_cfg()
    cfg.AEKT.WARMUP = 0
    torch.manual_seed(0)
    s = host.cifar_model_dict[p.student][0](num_classes=100)
    t = host.cifar_model_dict[p.teacher][0](num_classes=100)
    d = cls(s, t, cfg)
    d.teacher.requires_grad_(False)
    d = d.to(device, memory_format=torch.channels_last) if channels_last else d.to(device)
    d.train()
    params = list(d.get_learnable_parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    return d, params, opt, align


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="res56_res20", choices=sorted(CIFAR100_PAIRS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    cfg = host.base_cfg()
    amp = autocast_dtype(cfg, device)
    cl = device.type == "cuda"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    y = torch.randint(0, 100, (args.batch,), generator=g).to(device)
    built = {m: build(m, args.pair, device, cl) for m in METHODS}
    peak = {}

    def runner(m):
        d, params, opt, align = built[m]

        def step():
            opt.zero_grad(set_to_none=True)
            forward_backward(d, params, x, y, 30, align, amp)
            opt.step()

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
    print(header(device, f"pair {args.pair} | batch {args.batch} | amp {amp} | {args.rounds} rounds x {args.steps} steps"))
    base = median(times["KD"])
    print(f"{'method':12s} {'ms/step':>9s} {'x KD':>6s} {'peak MiB':>9s}")
    for m in METHODS:
        mem = f"{peak[m]:9.0f}" if m in peak else "      n/a"
        print(f"{m:12s} {1000 * median(times[m]):9.1f} {median(times[m]) / base:6.2f} {mem}")


if __name__ == "__main__":
    main()

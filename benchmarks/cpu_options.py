"""CPU options that could shorten a run without changing its recipe: threads, channels-last, compile.

Times one training step of a distiller (forward, backward, SGD step) under each option, the
options alternating round by round in one process (medians), and prints the ratio to the
default (all threads, contiguous, eager). Threads are switched with torch.set_num_threads; the
compiled variant is a separate copy of the same model compiled in place (its first steps, the
compilation, are not timed).

python benchmarks/cpu_options.py [--method KD] [--pair res20_res8] [--dataset cifar10] [--batch 64]
                                 [--variants default channels-last ...]
(--method NONE times the pair's student trained alone: the quickstart's teacher run is NONE on res56_res20's
resnet20.)
"""
import argparse
import time

import torch

from common import alternate, header, median

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.builders import build_model
from mdistiller_ext.engine.step import StepSetup, train_step
from mdistiller_ext.recipes import CIFAR10_PAIRS, CIFAR100_PAIRS


def build(method: str, pair: str, dataset: str, channels_last: bool, compile_: bool):
    p = (CIFAR10_PAIRS if dataset == "cifar10" else CIFAR100_PAIRS)[pair]
    classes = 10 if dataset == "cifar10" else 100
    cfg = registration.base_cfg()
    torch.manual_seed(0)
    s, t = build_model(p.student, dataset, classes), build_model(p.teacher, dataset, classes)
    cls = registration.distiller_registry()[method]
    d = cls(s) if method == "NONE" else cls(s, t, cfg)
    if hasattr(d, "teacher"):
        d.teacher.requires_grad_(False)
    d = d.to(memory_format=torch.channels_last) if channels_last else d
    if compile_:
        for m in d.children():
            m.compile()
    d.train()
    setup = StepSetup.for_distiller(d)
    return d, setup, torch.optim.SGD(setup.params, lr=0.01, momentum=0.9, weight_decay=5e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="KD")
    ap.add_argument("--pair", default="res20_res8")
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", nargs="*", default=None, help="a subset of the variants (by name), the default first")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    variants = {f"default ({threads} threads)": dict(threads=threads, cl=False, comp=False),
                "1 thread": dict(threads=1, cl=False, comp=False),
                "channels-last": dict(threads=threads, cl=True, comp=False),
                "compile": dict(threads=threads, cl=False, comp=True),
                "channels-last + compile": dict(threads=threads, cl=True, comp=True),
                "channels-last, 1 thread": dict(threads=1, cl=True, comp=False),
                "channels-last + compile, 1 thread": dict(threads=1, cl=True, comp=True)}
    if args.variants:
        first = next(iter(variants))
        variants = {k: v for k, v in variants.items() if k == first or k in args.variants}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10 if args.dataset == "cifar10" else 100, (args.batch,), generator=g)

    def runner(v):
        d, setup, opt = build(args.method, args.pair, args.dataset, v["cl"], v["comp"])
        xin = x.contiguous(memory_format=torch.channels_last) if v["cl"] else x

        def step():
            train_step(d, opt, xin, y, 30, setup)

        torch.set_num_threads(v["threads"])
        for _ in range(3):  # warm-up, and compilation for the compiled copy
            step()

        def timed() -> float:
            torch.set_num_threads(v["threads"])
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            return (time.perf_counter() - t0) / args.steps

        return timed

    times = alternate({k: runner(v) for k, v in variants.items()}, args.rounds)
    torch.set_num_threads(threads)
    print(header(torch.device("cpu"), f"{args.method} {args.dataset} {args.pair} | batch {args.batch} | "
                                      f"{args.rounds} rounds x {args.steps} steps"))
    base = median(times[next(iter(variants))])
    print(f"{'variant':34s} {'ms/step':>9s} {'x default':>10s}")
    for k in variants:
        print(f"{k:34s} {1000 * median(times[k]):9.1f} {median(times[k]) / base:10.2f}")


if __name__ == "__main__":
    main()

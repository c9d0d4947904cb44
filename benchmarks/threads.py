"""CPU threads on a machine other jobs keep busy: torch's default (one thread per core) against one
thread, and the default with OpenMP's passive wait policy.

Each variant is a fresh process (OMP_NUM_THREADS and OMP_WAIT_POLICY are read when torch loads), the
variants alternating round by round, each timing training steps of one distiller (forward, backward,
SGD step) after two warm-up steps; medians per variant and the ratio to the default are printed with
the machine's load average, which says how busy it was. Run it beside the jobs it should be measured
against (on an idle machine it measures the idle case).

python benchmarks/threads.py [--method KD] [--pair res20_res8] [--steps 10] [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

from common import median

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
import torch
from cpu_options import build
from mdistiller_ext.engine.step import train_step
d, setup, opt = build({method!r}, {pair!r}, "cifar10", False, False)
x = torch.randn({batch}, 3, 32, 32)
y = torch.randint(0, 10, ({batch},))
def step():
    train_step(d, opt, x, y, 30, setup)
for _ in range(2):
    step()
t = time.perf_counter()
for _ in range({steps}):
    step()
print(json.dumps({{"ms": (time.perf_counter() - t) / {steps} * 1000, "threads": torch.get_num_threads()}}))
"""


def run_variant(env_extra: dict, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    code = CHILD.format(here=HERE, method=args.method, pair=args.pair, batch=args.batch, steps=args.steps)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"error: a variant failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", default="KD")
    ap.add_argument("--pair", default="res20_res8")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    variants = {f"default ({cores} threads)": {},
                "1 thread (EXT.THREADS 1 / OMP_NUM_THREADS=1)": {"OMP_NUM_THREADS": "1"},
                f"default ({cores} threads), OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}
    loads = [os.getloadavg()[0]]
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, env in variants.items():
            times[name].append(run_variant(env, args)["ms"])
            loads.append(os.getloadavg()[0])
    base = median(times[next(iter(variants))])
    print(f"{time.strftime('%Y-%m-%d')}, CPU, {cores} cores, 1-minute load average {min(loads):.1f}-{max(loads):.1f} "
          f"during the measurement; {args.method} {args.pair}, batch {args.batch}, {args.rounds} rounds x {args.steps} steps")
    print("| variant | ms/step (median) | time vs default |")
    print("|---|---|---|")
    for name, ts in times.items():
        med = median(ts)
        print(f"| {name} | {med:.1f} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

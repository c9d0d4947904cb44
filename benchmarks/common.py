"""Shared helpers for the benchmarks: environment header, data, timing."""
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARED_JPEG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                           "cifar10-jpeg.tar.gz")


def header(device: torch.device, extra: str = "") -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return (f"device: {name} | torch {torch.__version__} | python {platform.python_version()} | "
            f"{time.strftime('%Y-%m-%d')}" + (f" | {extra}" if extra else "") + "\n"
            f"command: python {' '.join(sys.argv)}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cifar_arrays(n: int, seed: int = 0):
    """n training images of the CIFAR-10 JPEG copy if present, else random uint8 images (said in the output)."""
    if os.path.isfile(SHARED_JPEG):
        from mdistiller_ext.data.sources import load_cifar10

        cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
        x, y = load_cifar10(SHARED_JPEG, cache, download=False)["train"]
        return x[:n], y[:n], "CIFAR-10 JPEG copy"
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8), rng.randint(0, 10, n), "random images"


def alternate(fns: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, List[float]]:
    """Run every fn once per round, in turn, so drifts (thermal, other load) hit all alike."""
    out: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(fn())
    return out


def median(xs: List[float]) -> float:
    return statistics.median(xs)

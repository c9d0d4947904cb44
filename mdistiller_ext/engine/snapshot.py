"""In-epoch snapshots (EXT.SNAPSHOT_MINUTES): a run killed in the middle of a long epoch resumes at the
last snapshot's step instead of the epoch's start.

An epoch's data order and views are functions of (seed, epoch) (trainer.epoch_seed), so a position in
the epoch is a step count: resume draws the epoch again, passes over the steps already trained and
puts back what those steps changed beyond the weights: the random generators' states, the running
sums of the epoch's training loss and accuracy, and what the epoch's diagnostics had gathered. The
snapshot is its own file beside ``latest`` (``latest`` keeps meaning the last finished epoch, for the
host, eval and the sweeps), and is removed once the epoch's checkpoint is written.
"""
import random
import time
from typing import Dict

import numpy as np
import torch


class Clock:
    """Says when the next snapshot is due: every ``minutes`` of wall time (0: never)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = 60.0 * float(minutes)
        self.last = time.monotonic()

    def due(self) -> bool:
        if self.seconds <= 0:
            return False
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def capture_rng(device: torch.device, generators: Dict[str, torch.Generator]) -> Dict[str, object]:
    """Every random state a step can draw from: torch's (and CUDA's on a GPU), numpy's, Python's, and
    the engine's own ``generators``; only tensors and plain values, so weights_only loading reads it."""
    np_state = np.random.get_state()
    state: Dict[str, object] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Dict[str, object], device: torch.device, generators: Dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, g in generators.items():
        g.set_state(state["generators"][name])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


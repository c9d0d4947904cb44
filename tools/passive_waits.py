"""Before torch loads: on a busy machine, let OpenMP's threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE).

OpenMP reads the policy once, when torch loads it, so the command-line scripts call this first. With the
default (spinning) waits, torch's threads beside other busy processes wait on each other at every
operation (benchmarks/threads.py: a step 2.6x slower than on one thread, two busy processes on 2 cores);
passive waits give the same numbers (tests/test_runtime.py checks it bitwise). Nothing is changed where
the user set the policy, or where the machine has a core for every thread.
"""
import os


def passive_if_busy() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE for this process if the machine is busy; whether it did."""
    if "OMP_WAIT_POLICY" in os.environ:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", "") or cores)
        load = os.getloadavg()[0]
    except (ValueError, OSError):  # an odd OMP_NUM_THREADS, or no load average on this platform
        return False
    if threads <= 1 or load + threads <= cores + 0.5:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True

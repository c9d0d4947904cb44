"""benchmarks/parity.py: the statistics behind the 'within seed noise' verdict."""
import importlib
import math
import os
import sys

import pytest

from mdistiller_ext.reporting.aggregate import RunResult

from .conftest import ROOT


@pytest.fixture(scope="module")
def parity():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        yield importlib.import_module("parity")
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))


def run(seed, curve):
    r = RunResult(f"r{seed}", "cifar10", "kd", "res20_res8", seed, "finished",
                  {e + 1: {"test_acc": v} for e, v in enumerate(curve)})
    r.best_top1, r.last_top1 = max(curve), curve[-1]
    return r


def test_welch_matches_hand_computation(parity):
    a, b = [40.0, 42.0, 44.0], [38.0, 39.0, 40.0, 41.0]
    diff, se, t = parity.welch_t(a, b)
    # var(a) = 4, var(b) = 5/3: se = sqrt(4/3 + (5/3)/4)
    assert diff == pytest.approx(42.0 - 39.5)
    assert se == pytest.approx(math.sqrt(4 / 3 + 5 / 12))
    assert t == pytest.approx(2.5 / math.sqrt(4 / 3 + 5 / 12))
    assert parity.welch_t([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0, 0.0)
    assert parity.welch_t([2.0, 2.0], [1.0, 1.0])[2] == math.inf


def test_one_seed_is_refused_before_any_run(parity, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["parity.py", "--seeds", "0", "0"])
    monkeypatch.setattr(parity, "run_path", lambda *a: pytest.fail("a run started"))
    with pytest.raises(SystemExit, match="--seeds needs two or more seeds"):
        parity.main()


def test_report_verdicts(parity):
    same = {"on": [run(s, [30, 40 + s]) for s in range(3)], "off": [run(s, [31, 40.5 + s]) for s in range(3)]}
    text = parity.report(same)
    assert "NOT within" not in text and text.count("within seed noise") == 2
    apart = {"on": [run(s, [30, 36 + 0.5 * s]) for s in range(3)], "off": [run(s, [31, 42 + 0.5 * s]) for s in range(3)]}
    text = parity.report(apart)
    assert "best top-1, fast - host-style: -6.00" in text and "NOT within seed noise" in text
    assert parity.per_epoch(apart["on"]) == {1: (30.0, 0.0), 2: (36.5, 0.5)}

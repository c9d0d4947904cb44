"""The teacher-logit cache: entries equal the live teacher's logits on the same view, only fully
written entries count, damaged or foreign caches are never used silently, concurrent writers and
killed processes leave only valid entries, and a run with the cache trains as one without it."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mdistiller_ext.data import teacher_cache as tc
from mdistiller_ext.runs import worklog
from mdistiller_ext.errors import UserError
from mdistiller_ext.data.device import DeviceCifarLoader, random_crop_flip, view_ids, view_params
from mdistiller_ext.host.standalone.models import cifar_model_dict

from .conftest import ROOT, run_train, write_cifar10_jpeg_tar

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def teacher(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = cifar_model_dict["resnet8"][0](num_classes=10).eval()
    # a few steps of BN statistics so eval-mode logits are not all alike
    with torch.no_grad():
        net.train()
        net(torch.randn(32, 3, 32, 32))
        net.eval()
    return net


def key(name: str = "a" * 64, classes: int = 10) -> dict:
    return tc.make_key(name, "cifar10", MEAN, STD, classes, "f" * 64, "fp32", "resnet8")


def images(n: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)


def live(net, loader: DeviceCifarLoader, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    offsets, flips = view_params(views)
    crops = random_crop_flip(loader.images[idx], offsets, flips)
    with torch.no_grad():
        return net(loader.normalize(crops))[0]


def test_view_ids_cover_the_grid_and_invert():
    offsets = torch.stack(torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij"), -1).reshape(-1, 2)
    offsets = offsets.repeat_interleave(2, 0)
    flips = torch.arange(162) % 2 == 1
    ids = view_ids(offsets, flips)
    assert sorted(ids.tolist()) == list(range(162))
    back_offsets, back_flips = view_params(ids)
    assert torch.equal(back_offsets, offsets) and torch.equal(back_flips, flips)


def test_checksum_detects_one_word_and_a_wrong_place():
    values = torch.randn(6, 10)
    rows, views = torch.arange(6), torch.arange(6) * 7
    base = tc.checksum(values, rows, views)
    assert (base != 0).all()
    for i in range(10):
        changed = values.clone()
        changed[2, i] = torch.nextafter(changed[2, i], torch.tensor(float("inf")))  # one bit of one word
        assert tc.checksum(changed, rows, views)[2] != base[2]
    assert (tc.checksum(values, rows + 1, views) != base).all()
    assert (tc.checksum(values, rows, views + 1) != base).all()


def test_only_training_views_are_stored_and_older_stores_still_open(tmp_path):
    """Nothing reads a teacher's test-split logits: a new store holds the training views only; a store made
    when the test split was kept too (its files beside) opens under the same id, its training entries intact."""
    made = tc.LogitStore.open(str(tmp_path), key(), {"train": 10, "test": 2})
    assert sorted(os.listdir(made.path)) == ["lock", "record.json", "train.check", "train.logits"]
    assert tc.LogitStore.disk_bytes(key(), {"train": 10, "test": 2}) == 10 * tc.VIEWS * (10 * 4 + 4)
    rows, views = torch.tensor([1, 4]), torch.tensor([0, 161])
    values = torch.randn(2, 10)
    made.store(rows, views, values)
    for name, size in (("test.logits", 2 * 10 * 4), ("test.check", 2 * 4)):  # an older layout's extra files
        with open(os.path.join(made.path, name), "wb") as f:
            f.truncate(size)
    again = tc.LogitStore.open(str(tmp_path), key(), {"train": 10, "test": 2})
    got, hit = again.lookup(rows, views)
    assert again.path == made.path and hit.all() and torch.equal(got, values)


def test_cached_logits_equal_the_live_teacher_on_every_corner_and_random_views(tmp_path):
    net = teacher()
    x = images()
    loader = DeviceCifarLoader(x, np.arange(len(x)) % 10, 8, MEAN, STD, torch.device("cpu"), True,
                               origin=np.arange(len(x)) * 3 + 1)  # a subset: rows are full-split indices
    store = tc.LogitStore.open(str(tmp_path), key(), {"train": 80, "test": 5})
    cached = tc.CachedTeacher(net, store)
    corners = torch.tensor([[0, 0], [0, 8], [8, 0], [8, 8]])
    offsets = torch.cat([corners.repeat(2, 1), torch.randint(0, 9, (16, 2), generator=torch.Generator().manual_seed(1))])
    flips = torch.cat([torch.tensor([False] * 4 + [True] * 4), torch.rand(16, generator=torch.Generator().manual_seed(2)) < 0.5])
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:24]
    views = view_ids(offsets, flips)
    batches = list(loader.batches(idx, offsets, flips))  # the loader's own crops
    loader.with_views = True
    batches_v = list(loader.batches(idx, offsets, flips))
    for (img, _, i), (img_v, _, i_v, v) in zip(batches, batches_v):
        assert torch.equal(img, img_v) and torch.equal(i, i_v)
        first = cached.logits(img_v, loader.origin[i_v], v)           # computed and stored
        again = cached.logits(img_v, loader.origin[i_v], v)           # read back
        expect = live(net, loader, i_v, v)
        torch.testing.assert_close(first, expect, atol=1e-5, rtol=0)
        torch.testing.assert_close(again, expect, atol=1e-5, rtol=0)
    assert cached.misses == 24 and cached.hits == 24
    values, hit = store.lookup(loader.origin[idx], views)
    assert hit.all()
    torch.testing.assert_close(values, live(net, loader, idx, views), atol=1e-5, rtol=0)


def test_only_fully_written_entries_count(tmp_path):
    store = tc.LogitStore.open(str(tmp_path), key(), {"train": 10, "test": 2})
    rows, views = torch.tensor([1, 2, 3]), torch.tensor([0, 5, 161])
    # values written but the process died before their checksums: still empty
    store.logits[rows, views] = torch.randn(3, 10)
    assert not store.lookup(rows, views)[1].any()
    good = torch.randn(3, 10)
    store.store(rows, views, good)
    values, hit = store.lookup(rows, views)
    assert hit.all() and torch.equal(values, good)
    # a torn or altered entry (values changed after its checksum) is rejected, counted, and recomputed
    store.logits[2, 5, 3] += 1.0
    _, hit = store.lookup(rows, views)
    assert hit.tolist() == [True, False, True] and store.rejected == 1


def test_a_truncated_cache_is_refused_in_one_line(tmp_path):
    store = tc.LogitStore.open(str(tmp_path), key(), {"train": 10, "test": 2})
    with open(os.path.join(store.path, "train.logits"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(UserError, match="truncated.*delete"):
        tc.LogitStore.open(str(tmp_path), key(), {"train": 10, "test": 2})


def test_a_cache_of_another_teacher_is_refused(tmp_path):
    a, b = key("a" * 64), key("b" * 64)
    assert tc.key_id(a) != tc.key_id(b)  # another teacher is another cache ...
    made = tc.LogitStore.open(str(tmp_path), a, {"train": 10, "test": 2})
    os.rename(made.path, os.path.join(str(tmp_path), tc.key_id(b)))  # ... unless a folder is moved into its place
    with pytest.raises(UserError, match="another teacher.*teacher_sha256"):
        tc.LogitStore.open(str(tmp_path), b, {"train": 10, "test": 2})


FILLER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    from mdistiller_ext.data import teacher_cache as tc
    from tests.test_teacher_cache import key
    store = tc.LogitStore.open({path!r}, key(), {{"train": 400, "test": 2}})
    g = torch.Generator().manual_seed(int(sys.argv[1]))
    print("ready", flush=True)
    for step in range(int(sys.argv[2])):
        rows = torch.randint(0, 400, (64,), generator=g)
        views = torch.randint(0, 162, (64,), generator=g)
        values, hit = store.lookup(rows, views)
        miss = (~hit).nonzero().squeeze(1)
        # the "teacher": a deterministic function of (row, view), so every writer writes the same value
        truth = (rows[miss, None] * 1000 + views[miss, None] * 10 + torch.arange(10)).float()
        store.store(rows[miss], views[miss], truth)
""")


def _check_all_valid(path: str) -> int:
    store = tc.LogitStore.open(path, key(), {"train": 400, "test": 2})
    filled = (store.check != 0).nonzero()
    rows, views = filled[:, 0], filled[:, 1]
    values, hit = store.lookup(rows, views)
    assert hit.all(), f"{int((~hit).sum())} entries fail their checksum"
    expect = (rows[:, None] * 1000 + views[:, None] * 10 + torch.arange(10)).float()
    assert torch.equal(values, expect)
    return len(rows)


def _filler(tmp_path: Path, seed: int, steps: int) -> subprocess.Popen:
    script = tmp_path / "filler.py"
    script.write_text(FILLER.format(root=str(ROOT), path=str(tmp_path / "cache")))
    return subprocess.Popen([sys.executable, str(script), str(seed), str(steps)], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def test_two_processes_filling_one_cache_at_once(tmp_path):
    procs = [_filler(tmp_path, seed, 300) for seed in (1, 2)]  # both also race to create it
    for p in procs:
        assert p.wait(timeout=300) == 0
    assert _check_all_valid(str(tmp_path / "cache")) > 10000
    assert len(os.listdir(tmp_path / "cache")) == 1  # one cache, no leftover temporary folder


def test_a_killed_filler_leaves_only_valid_entries(tmp_path):
    p = _filler(tmp_path, 3, 10 ** 6)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert _check_all_valid(str(tmp_path / "cache")) > 0


# ----- real runs of tools/train.py -----

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("cache_e2e")
    (w / "data").mkdir()
    write_cifar10_jpeg_tar(w / "data" / "cifar10-jpeg.tar.gz", n_train=8, n_test=3)
    net = teacher(5)
    torch.save({"model": net.state_dict()}, w / "teacher.pth")
    cfg = yaml.safe_load((ROOT / "configs" / "cifar10" / "kd" / "res20_res8.yaml").read_text())
    cfg["DISTILLER"]["TEACHER"] = "resnet8"
    cfg["SOLVER"].update({"EPOCHS": 1, "BATCH_SIZE": 16})
    cfg["DATASET"] = {"TYPE": "cifar10", "NUM_WORKERS": 0, "TEST": {"BATCH_SIZE": 32}}
    cfg["LOG"] = {"PREFIX": "out"}
    cfg["EXT"] = {"DATA_ROOT": "data", "DATA_CACHE": "data", "PROGRESS": False, "DOWNLOAD": False, "TEACHER_MIN_ACC": 0.0,
                  "TEACHER_CKPT": "teacher.pth", "DETERMINISTIC": True, "THREADS": 1}
    (w / "kd.yaml").write_text(yaml.safe_dump(cfg))
    return w


def _train(work: Path, tag: str, *opts: str):
    r = run_train(["--cfg", "kd.yaml", "EXPERIMENT.TAG", tag, *opts], work)
    assert r.returncode == 0, r.stderr
    (run,) = (work / "out" / "cifar10_kd").glob(f"{tag},*")  # the name adds the overrides
    return r, run, torch.load(run / "student_latest", weights_only=True)["model"]


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


@pytest.mark.slow
def test_runs_with_and_without_the_cache_train_alike_and_a_cached_run_rewrites_nothing(work):
    _, off_dir, off = _train(work, "off", "EXT.TEACHER_CACHE", "off")
    r_fill, fill_dir, fill = _train(work, "fill", "EXT.TEACHER_CACHE", "on")
    assert "teacher logits: cache" in r_fill.stdout and "0.0% of the views filled" in r_fill.stdout
    root = work / "data" / "teacher_logits"
    (cache,) = root.iterdir()
    record = json.loads((cache / "record.json").read_text())
    assert record["fill"]["entries"] == 80 and record["fill"]["runs"] == 1 and record["key"]["precision"] == "fp32"
    before = _snapshot(cache)
    # the same seed meets the same views: every one is a hit, and nothing in the cache changes
    r_hit, hit_dir, hit = _train(work, "hit", "EXT.TEACHER_CACHE", "auto")
    assert _snapshot(cache) == before
    log = {name: worklog.read(str(d / "worklog.txt")) for name, d in (("off", off_dir), ("fill", fill_dir), ("hit", hit_dir))}
    assert log["fill"].epochs[1]["teacher_cache_hit"] == 0.0 and log["hit"].epochs[1]["teacher_cache_hit"] == 100.0
    for name in ("fill", "hit"):
        assert log[name].epochs[1]["train_loss"] == pytest.approx(log["off"].epochs[1]["train_loss"], abs=0.011)
        for k in off:
            torch.testing.assert_close((fill if name == "fill" else hit)[k].float(), off[k].float(), atol=1e-4, rtol=1e-4)
    runtime = {n: json.loads((d / "runtime.json").read_text()) for n, d in (("off", off_dir), ("hit", hit_dir))}
    where = f"cache {cache.name} (memory-mapped file)"
    assert runtime["off"]["teacher_logits"] == "live" and runtime["hit"]["teacher_logits"] == where
    assert f"teacher_logits={where}" in (hit_dir / "worklog.txt").read_text()


@pytest.mark.slow
def test_cache_on_where_it_cannot_apply_is_one_line(work):
    r = run_train(["--cfg", "kd.yaml", "EXPERIMENT.TAG", "slow", "EXT.TEACHER_CACHE", "on", "EXT.FAST_DATA", "off"], work)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "EXT.TEACHER_CACHE = 'on' cannot apply: it needs CIFAR on the device-resident data path" in r.stderr
    r = run_train(["--cfg", "kd.yaml", "EXPERIMENT.TAG", "auto_off", "EXT.FAST_DATA", "off"], work)
    assert r.returncode == 0 and "teacher logits: live (teacher cache off: it needs CIFAR" in r.stdout


@pytest.mark.parametrize("method", ["KD", "DKD", "DHKD", "AEKT"])
def test_logit_methods_use_the_logits_they_are_given_and_never_run_the_teacher(method):
    from mdistiller_ext import registry
    from mdistiller_ext.host import registration

    cfg = registration.base_cfg()
    cfg.DISTILLER.TYPE = method
    student, net = cifar_model_dict["resnet8"][0](num_classes=10), teacher()
    distiller = registry.get(method).distiller(student, net, cfg)
    assert distiller.TEACHER_LOGITS_ONLY
    calls = []
    net.register_forward_hook(lambda *a: calls.append(1))
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    given = torch.randn(4, 10) * 3
    torch.manual_seed(0)
    _, with_given = distiller.forward_train(x, y, epoch=30, teacher_logits=given)
    assert not calls
    torch.manual_seed(0)
    _, live_losses = distiller.forward_train(x, y, epoch=30)
    assert calls and not torch.equal(with_given["loss_kd"], live_losses["loss_kd"])


@pytest.mark.slow
def test_an_up_front_build_fills_every_view_and_a_new_seed_then_hits_every_time(work):
    tool = [sys.executable, str(ROOT / "tools" / "teacher_cache.py"), "--cfg", "kd.yaml"]
    r = subprocess.run(tool + ["--build", "--batch", "256"], cwd=work, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "100.0% of the training views filled" in r.stdout
    (cache,) = (work / "data" / "teacher_logits").iterdir()
    record = json.loads((cache / "record.json").read_text())
    net = teacher(5)
    store = tc.LogitStore.open(str(work / "data" / "teacher_logits"), record["key"], record["sizes"])
    from mdistiller_ext.data.sources import load_cifar10

    x, y = load_cifar10(str(work / "data"), str(work / "data"), False)["train"]
    loader = DeviceCifarLoader(x, y, 16, MEAN, STD, torch.device("cpu"), True)
    g = torch.Generator().manual_seed(4)
    rows, views = torch.randint(0, len(y), (32,), generator=g), torch.randint(0, 162, (32,), generator=g)
    values, hit = store.lookup(rows, views)
    assert hit.all()
    torch.testing.assert_close(values, live(net, loader, rows, views), atol=1e-5, rtol=0)
    _, run_dir, _ = _train(work, "built", "EXT.SEED", "9", "EXT.TEACHER_CACHE", "on")
    assert worklog.read(str(run_dir / "worklog.txt")).epochs[1]["teacher_cache_hit"] == 100.0

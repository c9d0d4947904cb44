"""Dataset layouts on small data the tests write in the real on-disk formats."""
import pickle

import numpy as np
import pytest
import torch

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.data.datasets import build_datasets
from mdistiller_ext.data.loaders import get_dataset
from mdistiller_ext.data import sources
from mdistiller_ext.data.sources import load_cifar10, load_cifar100
from mdistiller_ext.errors import UserError

from .conftest import class_images, write_cifar10_jpeg_tar, write_cifar100_python, write_cifar100_tar


def cfg_for(kind, root, **ext):
    cfg = registration.base_cfg()
    cfg.DATASET.TYPE = kind
    cfg.EXT.DATA_ROOT = str(root)
    cfg.EXT.DATA_CACHE = str(root)
    cfg.EXT.DOWNLOAD = False
    cfg.DATASET.NUM_WORKERS = 0
    cfg.SOLVER.BATCH_SIZE = 8
    for k, v in ext.items():
        cfg.EXT[k] = v
    return cfg


def test_cifar100_python_layout(tmp_path):
    write_cifar100_python(tmp_path)
    arrays = load_cifar100(str(tmp_path), str(tmp_path / "cache"), download=False)
    x, y = arrays["train"]
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8 and sorted(set(y)) == list(range(100))
    ref, _ = class_images(2, 100, 0)
    assert np.array_equal(x, ref)  # HWC order restored from CIFAR's CHW rows
    train_loader, val_loader, n, c = get_dataset(cfg_for("cifar100", tmp_path))
    image, target, index = next(iter(train_loader))
    assert image.shape == (8, 3, 32, 32) and (n, c) == (200, 100) and index.dtype == torch.long
    assert len(next(iter(val_loader))) == 2


@pytest.mark.parametrize("name_the_file", [False, True])
def test_cifar100_archive_read_without_unpacking(tmp_path, monkeypatch, name_the_file):
    """torchvision's cifar-100-python.tar.gz, found in EXT.DATA_ROOT or named by it, gives the arrays its
    unpacked folder gives; decoded once into EXT.DATA_CACHE (later loads never open the archive), nothing
    unpacked; the class names come from its meta; the run records which file it read."""
    write_cifar100_python(tmp_path / "folder", n_train=3, n_test=2)
    archive = write_cifar100_tar(tmp_path / "data" / "cifar-100-python.tar.gz", n_train=3, n_test=2)
    root = archive if name_the_file else archive.parent
    cache = tmp_path / "cache"
    got = load_cifar100(str(root), str(cache), download=False)
    want = load_cifar100(str(tmp_path / "folder"), str(cache), download=False)
    for split in ("train", "test"):
        assert np.array_equal(got[split][0], want[split][0]) and np.array_equal(got[split][1], want[split][1])
    assert got["train"][0].shape == (300, 32, 32, 3) and got["test"][0].shape == (200, 32, 32, 3)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-100-python.tar.gz"]  # nothing unpacked
    assert len(list(cache.glob("cifar-100-python-*.npz"))) == 1

    def never(path):
        raise AssertionError("the archive was decoded again")

    monkeypatch.setitem(sources._ARCHIVE_READERS, "cifar100", never)
    again = load_cifar100(str(root), str(cache), download=False)
    assert np.array_equal(again["train"][0], got["train"][0])
    cfg = cfg_for("cifar100", root)
    cfg.EXT.DATA_CACHE = str(cache)
    from mdistiller_ext.data.datasets import build_splits, class_names

    assert class_names(cfg) == [f"c{i}" for i in range(100)]
    record = build_splits(cfg).record["data_source"]
    assert record["form"] == "archive" and record["path"] == str(archive)
    assert record["decoded_cache"] == str(next(cache.glob("*.npz")))


def test_cifar100_archive_refuses_what_it_is_not(tmp_path):
    """A CIFAR-10 archive named as CIFAR-100, and an archive whose pickle holds code: one line each."""
    jpeg = write_cifar10_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz", n_train=1, n_test=1)
    with pytest.raises(UserError, match="holds no cifar-100-python/train pickle"):
        load_cifar100(str(jpeg), str(tmp_path / "cache"), download=False)
    import io
    import tarfile

    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for split in ("train", "test"):
            payload = pickle.dumps({"data": Boom(), "fine_labels": [0]})
            info = tarfile.TarInfo(f"cifar-100-python/{split}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(UserError, match="refusing to load builtins.eval"):
        load_cifar100(str(bad), str(tmp_path / "cache"), download=False)
    with pytest.raises(UserError, match="cifar100 not found at .*cifar-100-python.tar.gz"):
        load_cifar100(str(tmp_path / "nothing"), str(tmp_path / "cache"), download=False)


def test_cifar10_jpeg_archive_and_cache(tmp_path):
    write_cifar10_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz", n_train=3, n_test=2)
    first = load_cifar10(str(tmp_path), str(tmp_path / "cache"), download=False)
    assert first["train"][0].shape == (30, 32, 32, 3) and first["test"][0].shape == (20, 32, 32, 3)
    assert sorted(set(first["train"][1])) == list(range(10))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second = load_cifar10(str(tmp_path), str(tmp_path / "cache"), download=False)
    assert np.array_equal(first["train"][0], second["train"][0])
    # JPEG is lossy, but every image keeps its source's colour, in the source's order
    ref, _ = class_images(3, 10, 0)
    assert np.abs(first["train"][0].mean(axis=(1, 2)) - ref.mean(axis=(1, 2))).max() < 4


def test_train_subset_is_fixed(tmp_path):
    write_cifar10_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz", n_train=4, n_test=1)
    a, _, _ = build_datasets(cfg_for("cifar10", tmp_path, TRAIN_SUBSET=12))
    b, _, _ = build_datasets(cfg_for("cifar10", tmp_path, TRAIN_SUBSET=12, SEED=3))
    assert len(a) == 12 and np.array_equal(a.labels, b.labels)


def test_missing_dataset_is_one_line(tmp_path):
    for kind in ("cifar100", "cifar10", "imagenet"):
        with pytest.raises(UserError) as e:
            build_datasets(cfg_for(kind, tmp_path / "nowhere"))
        assert "\n" not in str(e.value) and "EXT.DATA_ROOT" in str(e.value)


class Boom:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


def test_malicious_cifar_pickle_is_refused(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split in ("train", "test"):
        with open(folder / split, "wb") as f:
            pickle.dump({"data": Boom(), "fine_labels": [0]}, f)
    with pytest.raises(UserError, match="refusing to load builtins.eval"):
        load_cifar100(str(tmp_path), str(tmp_path), download=False)


def test_imagenet_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(tmp_path / split / c / f"{i}.JPEG")
    train, val, c = build_datasets(cfg_for("imagenet", tmp_path))
    img, target, idx = train[3]
    assert img.shape == (3, 224, 224) and c == 2 and idx == 3 and val[0][0].shape == (3, 224, 224)
    # under torchrun each process evaluates its own shard of the val set (the engine sums over them)
    from mdistiller_ext.data.loaders import get_loaders

    shards = [get_loaders(cfg_for("imagenet", tmp_path), rank=r, world_size=2).test for r in (0, 1)]
    assert [len(s.dataset) for s in shards] == [2, 2]
    assert sorted(shards[0].dataset.indices) + sorted(shards[1].dataset.indices) == [0, 2, 1, 3]


def test_concurrent_cache_builds_do_not_collide(tmp_path):
    """Two processes (as two torchrun ranks do) decode and cache the same archive at the same time."""
    import subprocess
    import sys

    write_cifar10_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz", n_train=20, n_test=2)
    code = (f"from mdistiller_ext.data.sources import load_cifar10; "
            f"a = load_cifar10({str(tmp_path)!r}, {str(tmp_path / 'cache')!r}, False); print(a['train'][0].shape)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert all("(200, 32, 32, 3)" in o for o, _ in outs)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_cifar10_is_downloaded_into_a_data_root_that_does_not_exist_yet(tmp_path, monkeypatch):
    """A fresh clone has no ./data: with EXT.DOWNLOAD allowed, torchvision is asked to download into it."""
    import torchvision

    calls = []

    class FakeCIFAR10:  # stands in for the network: records the call and writes what torchvision would
        def __init__(self, root, train, download):
            calls.append((root, download))
            folder = tmp_path / "fresh" / "cifar-10-batches-py"
            folder.mkdir(parents=True)
            x, y = class_images(1, 10, 0)
            rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
            for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
                (folder / name).write_bytes(pickle.dumps({"data": rows, "labels": [int(v) for v in y]}))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "fresh"
    arrays = load_cifar10(str(root), str(root), download=True)
    assert calls == [(str(root), True)] and arrays["train"][0].shape == (50, 32, 32, 3)
    with pytest.raises(UserError, match="cifar10 not found"):
        load_cifar10(str(tmp_path / "other"), str(tmp_path), download=False)

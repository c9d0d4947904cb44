import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MDX_SHARED", ROOT.parent / "shared"))
CLASSES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pytest_runtest_setup(item):
    """Tests marked ``host`` need the real mdistiller; with MDX_REQUIRE_HOST=1 (CI's second run) its
    absence fails them instead of skipping them, so that no host test can pass unnoticed by skipping."""
    if item.get_closest_marker("host") is None:
        return
    from mdistiller_ext.host import adapter as host

    if host.HAS_MDISTILLER:
        return
    why = "mdistiller is not importable (install it from ../shared/vendor, see the README)"
    if os.environ.get("MDX_REQUIRE_HOST", "") not in ("", "0"):
        pytest.fail(f"MDX_REQUIRE_HOST is set but {why}")
    pytest.skip(why)


def shared_file(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not present (the shared facts live in ../shared beside the project)")
    return path


@pytest.fixture(scope="session")
def cifar_facts():
    return json.loads(shared_file("mdistiller/cifar_models.json").read_text())


@pytest.fixture(scope="session")
def imagenet_facts():
    return json.loads(shared_file("mdistiller/imagenet_models.json").read_text())


def class_images(n_per_class: int, n_classes: int, seed: int) -> tuple:
    """Learnable toy images: each class has its own mean colour, plus noise."""
    rng = np.random.RandomState(seed)
    colours = np.random.RandomState(123).randint(30, 225, size=(n_classes, 3))
    xs, ys = [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            img = np.clip(colours[c] + rng.randint(-25, 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            xs.append(img)
            ys.append(c)
    return np.stack(xs), np.asarray(ys)


def write_cifar10_jpeg_tar(path: Path, n_train: int = 6, n_test: int = 3, seed: int = 0) -> Path:
    """The JPEG copy's layout: cifar10-jpeg/{train,test}/<class>/NNNN.jpg in a .tar.gz."""
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", n_train), ("test", n_test)):
            x, y = class_images(n, 10, seed + (split == "test"))
            for i, (img, label) in enumerate(zip(x, y)):
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{CLASSES10[label]}/{i:04d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
    return path


def write_cifar100_python(root: Path, n_train: int = 2, n_test: int = 1) -> Path:
    """torchvision's on-disk layout: <root>/cifar-100-python/{train,test,meta} pickles."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = class_images(n, 100, seed)
        data = x.transpose(0, 3, 1, 2).reshape(len(y), -1)
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    return root


def write_cifar100_tar(path: Path, n_train: int = 2, n_test: int = 1) -> Path:
    """torchvision's cifar-100-python.tar.gz: the folder write_cifar100_python makes, meta first as in the real one."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_cifar100_python(Path(tmp), n_train, n_test) / "cifar-100-python"
        with tarfile.open(path, "w:gz") as tar:
            for name in ("meta", "test", "train"):
                tar.add(folder / name, arcname=f"cifar-100-python/{name}")
    return path


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10_jpeg_tar(root / "cifar10-jpeg.tar.gz")
    return root


def run_train(args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)

"""Where the images come from, as uint8 HWC arrays and integer labels.

cifar100: torchvision's on-disk layout (``<root>/cifar-100-python``), downloaded where allowed.
cifar10: torchvision's layout (``<root>/cifar-10-batches-py``), an ImageFolder tree with train/
and test/, or a .tar.gz of such a tree (the JPEG copy), read without unpacking and cached
decoded. CIFAR's pickles are read by an unpickler that admits only numpy arrays.
"""
import hashlib
import io
import os
import pickle
import tarfile
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from mdistiller_ext.errors import UserError

NUM_CLASSES = {"cifar100": 100, "cifar10": 10, "imagenet": 1000}
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"  # the JPEG copy of CIFAR-10, found inside EXT.DATA_ROOT


class _ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR's python pickles while refusing anything but plain data and numpy arrays."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def read_cifar_pickle(path: str) -> Dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"cannot read CIFAR file {path}: {e}; delete it and download the dataset again") from None


def _cifar_pickles(root: str, split_files: List[str], label_key: str) -> Tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in split_files:
        d = read_cifar_pickle(os.path.join(root, name))
        images.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(d[label_key], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _download(kind: str, root: str) -> None:
    from torchvision import datasets

    cls = datasets.CIFAR100 if kind == "cifar100" else datasets.CIFAR10
    try:
        cls(root, train=True, download=True)
    except Exception as e:  # network errors come in many types; the message says what to do
        raise UserError(
            f"{kind} not found under {root} and the download failed ({type(e).__name__}); put torchvision's "
            f"{'cifar-100-python' if kind == 'cifar100' else 'cifar-10-batches-py'} folder there or set EXT.DATA_ROOT"
        ) from None


def load_cifar100(root: str, download: bool) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    folder = os.path.join(root, "cifar-100-python")
    if not os.path.isdir(folder):
        if not download:
            raise UserError(f"cifar100 not found: no {folder}; set EXT.DATA_ROOT to the folder holding cifar-100-python or allow EXT.DOWNLOAD")
        _download("cifar100", root)
    return {split: _cifar_pickles(folder, [split], "fine_labels") for split in ("train", "test")}


def load_cifar10(root: str, cache: str, download: bool) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    if os.path.isfile(root) and root.endswith((".tar.gz", ".tgz", ".tar")):
        return _cached_archive(root, cache)
    bundled = os.path.join(root, JPEG_ARCHIVE)
    if os.path.isfile(bundled):
        return _cached_archive(bundled, cache)
    batches = os.path.join(root, "cifar-10-batches-py")
    if os.path.isdir(batches):
        return {"train": _cifar_pickles(batches, [f"data_batch_{i}" for i in range(1, 6)], "labels"),
                "test": _cifar_pickles(batches, ["test_batch"], "labels")}
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
        return {split: _image_folder_arrays(os.path.join(root, split)) for split in ("train", "test")}
    if not download:
        raise UserError(
            f"cifar10 not found at {root}: expected {JPEG_ARCHIVE} (or another .tar.gz of the JPEG copy), a folder with train/ and test/, "
            f"or torchvision's cifar-10-batches-py; set EXT.DATA_ROOT"
        )
    _download("cifar10", root)
    return load_cifar10(root, cache, download=False)


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _pack(samples: List[Tuple[str, np.ndarray]], classes: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    return np.stack([s[1] for s in samples]), np.asarray([index[s[0]] for s in samples], dtype=np.int64)


def _image_folder_arrays(folder: str) -> Tuple[np.ndarray, np.ndarray]:
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    samples = []
    for c in classes:
        for f in sorted(os.listdir(os.path.join(folder, c))):
            with open(os.path.join(folder, c, f), "rb") as fh:
                samples.append((c, _decode(fh.read())))
    if not samples:
        raise UserError(f"no images found under {folder}")
    return _pack(samples, classes)


def _archive_arrays(path: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Decode <any prefix>/{train,test}/<class>/<file> members straight from the archive."""
    found: Dict[str, List[Tuple[str, str, np.ndarray]]] = {"train": [], "test": []}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                parts = m.name.split("/")
                if not m.isfile() or len(parts) < 3 or parts[-3] not in found:
                    continue
                found[parts[-3]].append((parts[-2], m.name, _decode(tar.extractfile(m).read())))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"cannot read archive {path}: {e}; check the file (e.g. its sha256) or download it again") from None
    if not found["train"] or not found["test"]:
        raise UserError(f"{path} holds no train/<class>/ and test/<class>/ images")
    classes = sorted({c for c, _, _ in found["train"]})
    out = {}
    for split, items in found.items():
        items.sort(key=lambda t: t[1])
        out[split] = _pack([(c, a) for c, _, a in items], classes)
    return out


def _cached_archive(path: str, cache: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    cache_file = os.path.join(cache, f"{os.path.basename(path).split('.')[0]}-{key}.npz")
    if os.path.isfile(cache_file):
        with np.load(cache_file) as z:
            return {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test")}
    arrays = _archive_arrays(path)
    os.makedirs(cache, exist_ok=True)
    from mdistiller_ext.atomic import write_atomic

    # unique temporary names: several ranks (torchrun) may build the same cache at once
    write_atomic(cache_file, lambda f: np.savez(f, **{f"{s}_{k}": v for s, (x, y) in arrays.items()
                                                      for k, v in (("x", x), ("y", y))}))
    return arrays

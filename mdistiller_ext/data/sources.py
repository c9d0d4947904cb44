"""Where the images come from, as uint8 HWC arrays and integer labels.

CIFAR-100 and CIFAR-10 are read from whichever form a user has (``locate_cifar``): torchvision's
unpacked folder (``cifar-100-python``, ``cifar-10-batches-py``), its archive read without unpacking
(``cifar-100-python.tar.gz``), for CIFAR-10 also the JPEG copy (an ImageFolder tree with train/
and test/, or a .tar.gz of one); downloaded by torchvision where allowed. Archives are decoded once
into ``EXT.DATA_CACHE``. CIFAR's pickles are read by an unpickler that admits only numpy arrays.
"""
import hashlib
import io
import os
import pickle
import tarfile
from typing import IO, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image

from mdistiller_ext.errors import UserError

NUM_CLASSES = {"cifar100": 100, "cifar10": 10, "imagenet": 1000}
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"  # the JPEG copy of CIFAR-10, found inside EXT.DATA_ROOT
FOLDERS = {"cifar100": "cifar-100-python", "cifar10": "cifar-10-batches-py"}  # torchvision's unpacked layout
# archives found inside EXT.DATA_ROOT: torchvision's CIFAR-100 download, the JPEG copy of CIFAR-10
ARCHIVES = {"cifar100": "cifar-100-python.tar.gz", "cifar10": JPEG_ARCHIVE}
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

Arrays = Dict[str, Tuple[np.ndarray, np.ndarray]]  # {"train": (images, labels), "test": (images, labels)}


class _ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR's python pickles while refusing anything but plain data and numpy arrays."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def _unpickle(f: IO[bytes], name: str) -> Dict:
    try:
        return _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"cannot read CIFAR file {name}: {e}; delete it and download the dataset again") from None


def read_cifar_pickle(path: str) -> Dict:
    try:
        with open(path, "rb") as f:
            return _unpickle(f, path)
    except OSError as e:
        raise UserError(f"cannot read CIFAR file {path}: {e}; delete it and download the dataset again") from None


def _split_arrays(d: Dict, label_key: str, name: str) -> Tuple[np.ndarray, np.ndarray]:
    if "data" not in d or label_key not in d:
        raise UserError(f"CIFAR file {name} has no 'data' and '{label_key}' entries; is it the right dataset's file?")
    images = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(d[label_key], dtype=np.int64)


def _cifar_pickles(root: str, split_files: List[str], label_key: str) -> Tuple[np.ndarray, np.ndarray]:
    parts = [_split_arrays(read_cifar_pickle(os.path.join(root, name)), label_key, os.path.join(root, name))
             for name in split_files]
    return np.ascontiguousarray(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts])


def _download(kind: str, root: str) -> None:
    from torchvision import datasets

    cls = datasets.CIFAR100 if kind == "cifar100" else datasets.CIFAR10
    try:
        cls(root, train=True, download=True)
    except Exception as e:  # network errors come in many types; the message says what to do
        raise UserError(
            f"{kind} not found under {root} and the download failed ({type(e).__name__}); put torchvision's "
            f"{FOLDERS[kind]} folder (or {ARCHIVES[kind]}) there or set EXT.DATA_ROOT"
        ) from None


class Location(NamedTuple):
    form: str   # archive | pickles | image_folder
    path: str   # the archive file, or the folder read


def locate_cifar(kind: str, root: str) -> Optional[Location]:
    """Where CIFAR data is under ``root``: ``root`` itself an archive, torchvision's unpacked folder, the
    archive inside ``root``, (cifar10) a train/ + test/ image tree; None where there is none."""
    if os.path.isfile(root) and root.endswith(_ARCHIVE_SUFFIXES):
        return Location("archive", root)
    folder = os.path.join(root, FOLDERS[kind])
    if os.path.isdir(folder):
        return Location("pickles", folder)
    bundled = os.path.join(root, ARCHIVES[kind])
    if os.path.isfile(bundled):
        return Location("archive", bundled)
    if kind == "cifar10" and all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test")):
        return Location("image_folder", root)
    return None


def load_cifar(kind: str, root: str, cache: str, download: bool) -> Arrays:
    """The train and test splits as uint8 NHWC images and int64 labels, from wherever ``locate_cifar``
    finds them (an archive decoded once into ``cache``), downloaded by torchvision where allowed."""
    where = locate_cifar(kind, root)
    if where is None:
        if not download:
            expected = (f"{ARCHIVES[kind]} (or another .tar.gz of it) or torchvision's {FOLDERS[kind]}"
                        + (" or a folder with train/ and test/" if kind == "cifar10" else ""))
            raise UserError(f"{kind} not found at {root}: expected {expected}; set EXT.DATA_ROOT or allow EXT.DOWNLOAD")
        _download(kind, root)
        return load_cifar(kind, root, cache, download=False)
    if where.form == "archive":
        return _cached_archive(where.path, cache, _ARCHIVE_READERS[kind])
    if where.form == "image_folder":
        return {split: _image_folder_arrays(os.path.join(root, split)) for split in ("train", "test")}
    if kind == "cifar100":
        return {split: _cifar_pickles(where.path, [split], "fine_labels") for split in ("train", "test")}
    return {"train": _cifar_pickles(where.path, [f"data_batch_{i}" for i in range(1, 6)], "labels"),
            "test": _cifar_pickles(where.path, ["test_batch"], "labels")}


def load_cifar100(root: str, cache: str, download: bool) -> Arrays:
    return load_cifar("cifar100", root, cache, download)


def load_cifar10(root: str, cache: str, download: bool) -> Arrays:
    return load_cifar("cifar10", root, cache, download)


def _archive_error(path: str, e: Exception) -> UserError:
    return UserError(f"cannot read archive {path}: {e}; check the file (e.g. its sha256) or download it again")


def cifar100_class_names(root: str) -> List[str]:
    """CIFAR-100's fine label names from its ``meta`` (folder or archive), or [] where there is none."""
    where = locate_cifar("cifar100", root)
    if where is None or where.form == "image_folder":
        return []
    if where.form == "pickles":
        meta = os.path.join(where.path, "meta")
        return list(read_cifar_pickle(meta).get("fine_label_names", [])) if os.path.isfile(meta) else []
    try:
        with tarfile.open(where.path) as tar:
            for m in tar:  # meta comes first in torchvision's archive: stop there, not after 180 MB
                if m.isfile() and m.name.split("/")[-1] == "meta":
                    return list(_unpickle(tar.extractfile(m), m.name).get("fine_label_names", []))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _archive_error(where.path, e) from None
    return []


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


def _jpeg_archive_arrays(path: str) -> Arrays:
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
        raise _archive_error(path, e) from None
    if not found["train"] or not found["test"]:
        raise UserError(f"{path} holds no train/<class>/ and test/<class>/ images")
    classes = sorted({c for c, _, _ in found["train"]})
    out = {}
    for split, items in found.items():
        items.sort(key=lambda t: t[1])
        out[split] = _pack([(c, a) for c, _, a in items], classes)
    return out


def _cifar100_archive_arrays(path: str) -> Arrays:
    """torchvision's cifar-100-python.tar.gz: the <prefix>/train and <prefix>/test pickles, unpickled from
    the archive stream (no member is written to disk)."""
    out: Arrays = {}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                split = m.name.split("/")[-1]
                if m.isfile() and split in ("train", "test"):
                    out[split] = _split_arrays(_unpickle(tar.extractfile(m), f"{path}:{m.name}"), "fine_labels",
                                               f"{path}:{m.name}")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _archive_error(path, e) from None
    missing = [s for s in ("train", "test") if s not in out]
    if missing:
        raise UserError(f"{path} holds no cifar-100-python/{missing[0]} pickle; is it torchvision's CIFAR-100 archive?")
    return out


_ARCHIVE_READERS: Dict[str, Callable[[str], Arrays]] = {"cifar100": _cifar100_archive_arrays,
                                                         "cifar10": _jpeg_archive_arrays}


def archive_cache_file(path: str, cache: str) -> str:
    """The decoded copy of an archive: keyed by its absolute path, size and modification time."""
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return os.path.join(cache, f"{os.path.basename(path).split('.')[0]}-{key}.npz")


def _cached_archive(path: str, cache: str, read: Callable[[str], Arrays]) -> Arrays:
    cache_file = archive_cache_file(path, cache)
    if os.path.isfile(cache_file):
        with np.load(cache_file) as z:
            return {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test")}
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"data: decoding {path} once into {cache_file} (EXT.DATA_CACHE; later runs read it)", flush=True)
    arrays = read(path)
    os.makedirs(cache, exist_ok=True)
    from mdistiller_ext.atomic import write_atomic

    # unique temporary names: several ranks (torchrun) may build the same cache at once
    write_atomic(cache_file, lambda f: np.savez(f, **{f"{s}_{k}": v for s, (x, y) in arrays.items()
                                                      for k, v in (("x", x), ("y", y))}))
    return arrays

"""Datasets with the host's batch format: train batches (image, target, index), val (image, target).

cifar100: torchvision's on-disk layout (``<root>/cifar-100-python``), downloaded where allowed.
cifar10: torchvision's layout (``<root>/cifar-10-batches-py``), an ImageFolder tree with train/
and test/, or a .tar.gz of such a tree (the JPEG copy), read without unpacking and cached
decoded. imagenet: ImageFolder ``<root>/train`` and ``<root>/val``.
"""
import hashlib
import io
import os
import pickle
import tarfile
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from yacs.config import CfgNode

from .errors import UserError

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
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


def _read_cifar_pickle(path: str) -> Dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"cannot read CIFAR file {path}: {e}; delete it and download the dataset again") from None


def _cifar_pickles(root: str, split_files: List[str], label_key: str) -> Tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in split_files:
        d = _read_cifar_pickle(os.path.join(root, name))
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
    from .atomic import write_atomic

    # unique temporary names: several ranks (torchrun) may build the same cache at once
    write_atomic(cache_file, lambda f: np.savez(f, **{f"{s}_{k}": v for s, (x, y) in arrays.items()
                                                      for k, v in (("x", x), ("y", y))}))
    return arrays


class ArrayDataset(Dataset):
    """uint8 HWC images in memory with per-sample PIL transforms (the host's semantics).

    ``origin[i]`` is sample i's index in the full split it was taken from (a subset or the rest after
    a validation split keeps it), so that per-image records such as the teacher-logit cache are shared
    by every subset of one split."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform, with_index: bool,
                 origin: Optional[np.ndarray] = None) -> None:
        self.images, self.labels = images, labels
        self.transform, self.with_index = transform, with_index
        self.origin = np.arange(len(labels), dtype=np.int64) if origin is None else np.asarray(origin, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.transform(Image.fromarray(self.images[i]))
        target = int(self.labels[i])
        return (img, target, i) if self.with_index else (img, target)


class IndexedImageFolder(Dataset):
    def __init__(self, root: str, transform) -> None:
        from torchvision.datasets import ImageFolder

        self.inner = ImageFolder(root, transform=transform)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        img, target = self.inner[i]
        return img, target, i


def cifar_transforms(mean, std):
    train = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                transforms.ToTensor(), transforms.Normalize(mean, std)])
    test = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return train, test


def normalization(kind: str):
    return {"cifar100": (CIFAR100_MEAN, CIFAR100_STD), "cifar10": (CIFAR10_MEAN, CIFAR10_STD)}.get(kind, (IMAGENET_MEAN, IMAGENET_STD))


VAL_SPLIT_SEED = 0  # the held-out images do not depend on EXT.SEED: every seed is validated on the same images


def stratified_holdout(labels: np.ndarray, n: int, seed: int = VAL_SPLIT_SEED) -> np.ndarray:
    """Sorted indices of ``n`` samples drawn per class in proportion to the class sizes (largest
    remainder), each class's draw a fixed permutation of its samples."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(np.int64)
    for i in np.argsort(-(quota - take), kind="stable")[:n - int(take.sum())]:
        take[i] += 1
    rng = np.random.RandomState(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


class Splits(NamedTuple):
    train: Dataset
    test: Dataset
    holdout: Optional[Dataset]   # EXT.VAL_SPLIT images (evaluation transform), None without a split
    num_classes: int
    record: Dict[str, object]    # what was held out and kept (recorded in runtime.json)


def _cifar_splits(cfg: CfgNode) -> Splits:
    kind, root = cfg.DATASET.TYPE, cfg.EXT.DATA_ROOT
    if kind == "cifar100":
        arrays = load_cifar100(root, cfg.EXT.DOWNLOAD)
    else:
        arrays = load_cifar10(root, cfg.EXT.DATA_CACHE, cfg.EXT.DOWNLOAD)
    train_t, test_t = cifar_transforms(*normalization(kind))
    num_classes = NUM_CLASSES[kind]
    x, y = arrays["train"]
    top = int(max(y.max(), arrays["test"][1].max()))
    if top >= num_classes:
        raise UserError(f"{kind} data at {root} has label {top}, but {kind} has {num_classes} classes")
    keep = np.arange(len(y), dtype=np.int64)
    holdout, record = None, {}
    if cfg.EXT.TEACHER_CACHE != "off":  # the teacher-logit cache is indexed by the full split, in this order
        from .teacher_cache import data_fingerprint

        mean, std = normalization(kind)
        record["train_split"] = {"images": int(len(y)), "num_classes": num_classes, "sha256": data_fingerprint(x, y),
                                 "mean": list(mean), "std": list(std), "test_images": int(len(arrays["test"][1]))}
    n_val, subset = cfg.EXT.VAL_SPLIT, cfg.EXT.TRAIN_SUBSET
    if n_val:
        if n_val >= len(y):
            raise UserError(f"config EXT.VAL_SPLIT = {n_val} leaves no training images ({kind} has {len(y)}); hold out fewer")
        held = stratified_holdout(y, n_val)
        keep = np.setdiff1d(keep, held)
        holdout = ArrayDataset(x[held], y[held], test_t, False, held)
        record["val_split"] = {"images": int(n_val), "seed": VAL_SPLIT_SEED, "stratified": True,
                               "indices_sha256": hashlib.sha256(held.tobytes()).hexdigest()}
    if subset:
        if subset > len(keep):
            raise UserError(f"config EXT.TRAIN_SUBSET = {subset} is more than the {len(keep)} training images left")
        # a fixed permutation, independent of EXT.SEED, so every seed sees the same images
        keep = np.sort(keep[np.random.RandomState(0).permutation(len(keep))[:subset]])
    return Splits(ArrayDataset(x[keep], y[keep], train_t, True, keep), ArrayDataset(*arrays["test"], test_t, False),
                  holdout, num_classes, record)


def build_splits(cfg: CfgNode) -> Splits:
    kind, root = cfg.DATASET.TYPE, cfg.EXT.DATA_ROOT
    if kind in ("cifar100", "cifar10"):
        return _cifar_splits(cfg)
    if kind == "imagenet":
        for key in ("TRAIN_SUBSET", "VAL_SPLIT"):
            if cfg.EXT[key]:
                raise UserError(f"config EXT.{key} is only supported for cifar10/cifar100; set it to 0")
        for split in ("train", "val"):
            if not os.path.isdir(os.path.join(root, split)):
                raise UserError(f"imagenet not found: no {os.path.join(root, split)}; set EXT.DATA_ROOT to a folder with train/ and val/ ImageFolders")
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_t = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor(), normalize])
        test_t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize])
        from torchvision.datasets import ImageFolder

        train = IndexedImageFolder(os.path.join(root, "train"), train_t)
        return Splits(train, ImageFolder(os.path.join(root, "val"), test_t), None, len(train.inner.classes), {})
    raise UserError(f"DATASET.TYPE {kind!r} is not supported here; use cifar100, cifar10 or imagenet (tiny_imagenet needs mdistiller)")


def build_datasets(cfg: CfgNode) -> Tuple[Dataset, Dataset, int]:
    """(train, test, num_classes); the train split without the EXT.VAL_SPLIT images."""
    splits = build_splits(cfg)
    return splits.train, splits.test, splits.num_classes


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def eval_split(cfg: CfgNode, split: str) -> Dataset:
    """The train or test split with the evaluation transform (no augmentation), batches (image, target)."""
    train, test, _ = build_datasets(cfg)
    if split == "test":
        return test
    if isinstance(train, ArrayDataset):
        return ArrayDataset(train.images, train.labels, cifar_transforms(*normalization(cfg.DATASET.TYPE))[1], False)
    from torchvision.datasets import ImageFolder

    return ImageFolder(os.path.join(cfg.EXT.DATA_ROOT, "train"), test.transform)


def class_names(cfg: CfgNode) -> List[str]:
    """The dataset's class names in label order, where it has them (else an empty list)."""
    if cfg.DATASET.TYPE == "cifar10":
        return list(CIFAR10_CLASSES)
    if cfg.DATASET.TYPE == "cifar100":
        meta = os.path.join(cfg.EXT.DATA_ROOT, "cifar-100-python", "meta")
        return list(_read_cifar_pickle(meta).get("fine_label_names", [])) if os.path.isfile(meta) else []
    return []


class Loaders(NamedTuple):
    train: object
    test: object
    holdout: Optional[object]   # the EXT.VAL_SPLIT images, evaluated like the test split (None: no split)
    num_data: int
    num_classes: int
    record: Dict[str, object]


def get_loaders(cfg: CfgNode, generator: torch.Generator = None, device: torch.device = None,
                rank: int = 0, world_size: int = 1) -> Loaders:
    """The train, test and held-out loaders. With the fast path they are ``DeviceCifarLoader``s on
    ``device``; otherwise torchvision DataLoaders (a DistributedSampler under torch.distributed).
    SOLVER.BATCH_SIZE is global."""
    from .runtime import channels_last_for, fast_data_for

    train, val, holdout, num_classes, record = build_splits(cfg)
    if device is not None and fast_data_for(cfg):
        from .fastdata import DeviceCifarLoader

        mean, std = normalization(cfg.DATASET.TYPE)
        cl = channels_last_for(cfg, device)

        def on_device(ds: ArrayDataset, batch: int, is_train: bool) -> DeviceCifarLoader:
            return DeviceCifarLoader(ds.images, ds.labels, batch, mean, std, device, is_train, cfg.EXT.SEED,
                                     rank, world_size, cl, origin=ds.origin)

        test_batch = cfg.DATASET.TEST.BATCH_SIZE
        return Loaders(on_device(train, cfg.SOLVER.BATCH_SIZE, True), on_device(val, test_batch, False),
                       on_device(holdout, test_batch, False) if holdout is not None else None,
                       len(train), num_classes, record)
    workers = cfg.DATASET.NUM_WORKERS
    pin = torch.cuda.is_available()
    if world_size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train, world_size, rank, shuffle=True, seed=cfg.EXT.SEED, drop_last=True)
        train_loader = DataLoader(train, batch_size=max(1, cfg.SOLVER.BATCH_SIZE // world_size), sampler=sampler,
                                  num_workers=workers, generator=generator, pin_memory=pin, persistent_workers=workers > 0)
    else:
        train_loader = DataLoader(train, batch_size=cfg.SOLVER.BATCH_SIZE, shuffle=True, num_workers=workers,
                                  generator=generator, pin_memory=pin, persistent_workers=workers > 0)

    def evaluation(ds: Dataset) -> DataLoader:
        if world_size > 1:  # each process evaluates every world_size-th image; the engine sums over processes
            from torch.utils.data import Subset

            ds = Subset(ds, range(rank, len(ds), world_size))
        return DataLoader(ds, batch_size=cfg.DATASET.TEST.BATCH_SIZE, shuffle=False, num_workers=workers,
                          persistent_workers=workers > 0)

    return Loaders(train_loader, evaluation(val), evaluation(holdout) if holdout is not None else None,
                   len(train), num_classes, record)


def get_dataset(cfg: CfgNode, generator: torch.Generator = None, device: torch.device = None,
                rank: int = 0, world_size: int = 1):
    """(train_loader, val_loader, num_data, num_classes), like ``mdistiller.dataset.get_dataset``."""
    loaders = get_loaders(cfg, generator, device, rank, world_size)
    return loaders.train, loaders.test, loaders.num_data, loaders.num_classes

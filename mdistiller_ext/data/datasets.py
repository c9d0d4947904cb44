"""Datasets with the host's batch format: train items (image, target, index), test items (image, target),
their transforms, and the train / test / held-out splits a config asks for. imagenet: ImageFolder
``<root>/train`` and ``<root>/val``.
"""
import hashlib
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from yacs.config import CfgNode

from mdistiller_ext.data.sources import NUM_CLASSES, archive_cache_file, cifar100_class_names, load_cifar, locate_cifar
from mdistiller_ext.errors import UserError

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    arrays = load_cifar(kind, root, cfg.EXT.DATA_CACHE, cfg.EXT.DOWNLOAD)
    where = locate_cifar(kind, root)  # after a download, the folder it made
    train_t, test_t = cifar_transforms(*normalization(kind))
    num_classes = NUM_CLASSES[kind]
    x, y = arrays["train"]
    top = int(max(y.max(), arrays["test"][1].max()))
    if top >= num_classes:
        raise UserError(f"{kind} data at {root} has label {top}, but {kind} has {num_classes} classes")
    keep = np.arange(len(y), dtype=np.int64)
    holdout = None
    record: Dict[str, object] = {"data_source": {"form": where.form, "path": os.path.abspath(where.path)}}
    if where.form == "archive":
        record["data_source"]["decoded_cache"] = os.path.abspath(archive_cache_file(where.path, cfg.EXT.DATA_CACHE))
    from mdistiller_ext.data.teacher_cache import data_fingerprint

    # what a teacher's measured accuracy is remembered against (runs.teacher_accuracy)
    record["test_split"] = {"images": int(len(arrays["test"][1])), "sha256": data_fingerprint(*arrays["test"])}
    if cfg.EXT.TEACHER_CACHE != "off":  # the teacher-logit cache is indexed by the full split, in this order
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
        val = ImageFolder(os.path.join(root, "val"), test_t)
        record = {"data_source": {"form": "image_folder", "path": os.path.abspath(root)},
                  "test_split": {"images": len(val)}}
        return Splits(train, val, None, len(train.inner.classes), record)
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
        return cifar100_class_names(cfg.EXT.DATA_ROOT)
    return []

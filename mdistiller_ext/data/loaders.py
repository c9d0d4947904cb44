"""Loaders for a run: the device-resident CIFAR path or torchvision DataLoaders, and the policy that
decides between them (what ``EXT.FAST_DATA`` and ``EXT.CHANNELS_LAST`` mean on a device)."""
from typing import Dict, NamedTuple, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from yacs.config import CfgNode

from mdistiller_ext.config import SWITCHES
from mdistiller_ext.data.datasets import ArrayDataset, build_splits, normalization
from mdistiller_ext.errors import UserError


def channels_last_for(cfg: CfgNode, device: torch.device) -> bool:
    """EXT.CHANNELS_LAST on a device: auto is on, for CUDA and the CPU alike (measured on this project's CPU:
    0.75x and 0.59x of the contiguous step time for the quickstart's teacher and DHKD student, 0.73x for a KD
    step: benchmarks/RESULTS.md)."""
    on = SWITCHES[cfg.EXT.CHANNELS_LAST]
    return True if on is None else on


def fast_data_for(cfg: CfgNode) -> bool:
    """EXT.FAST_DATA: auto is on for the CIFAR datasets (the only ones held in memory)."""
    on, cifar = SWITCHES[cfg.EXT.FAST_DATA], cfg.DATASET.TYPE in ("cifar10", "cifar100")
    if on and not cifar:
        raise UserError(f"config EXT.FAST_DATA = 'on' needs cifar10 or cifar100, not {cfg.DATASET.TYPE}; use auto or off")
    return on is not False and cifar


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
    train, val, holdout, num_classes, record = build_splits(cfg)
    if device is not None and fast_data_for(cfg):
        from mdistiller_ext.data.device import DeviceCifarLoader

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
    # the training loader's workers are started anew every epoch (not persistent): each epoch's workers are
    # seeded from the loader's generator, which the engine reseeds from (seed, epoch, rank), so augmentation is
    # a function of those and a resumed run repeats it; persistent workers keep their first epoch's seeds
    if world_size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train, world_size, rank, shuffle=True, seed=cfg.EXT.SEED, drop_last=True)
        train_loader = DataLoader(train, batch_size=max(1, cfg.SOLVER.BATCH_SIZE // world_size), sampler=sampler,
                                  num_workers=workers, generator=generator, pin_memory=pin, persistent_workers=False)
    else:
        train_loader = DataLoader(train, batch_size=cfg.SOLVER.BATCH_SIZE, shuffle=True, num_workers=workers,
                                  generator=generator, pin_memory=pin, persistent_workers=False)

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

"""A device-resident CIFAR pipeline: the whole split as one uint8 tensor, augmented in batch.

Same semantics as the host's torchvision pipeline (RandomCrop(32, padding=4) with zero padding,
RandomHorizontalFlip(0.5), ToTensor, Normalize(mean, std)), but with no per-image Python work,
no worker processes and no host-to-device copy per step. Each epoch's order and augmentation
draws come from a generator seeded with (seed, epoch); batches are (image, target, index) like
the host's, or (image, target) for evaluation. Under torch.distributed each rank takes an equal
shard of the global permutation.
"""
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

GRID = 9  # crop offsets (top, left) in 0..8 each with padding 4
VIEWS = GRID * GRID * 2  # mirrored or not: the 162 distinct views of an image


def random_crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop each image of ``images`` (B, C, H, W) at (top, left) = offsets[b] after zero-padding by
    ``pad`` on every side, then mirror it where ``flips[b]``. Pure indexing, any dtype."""
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)   # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)   # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def view_ids(offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The view index in [0, 162) of crop offsets (top, left) and a flip flag."""
    return (offsets[:, 0].long() * GRID + offsets[:, 1].long()) * 2 + flips.long()


def view_params(views: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``view_ids``: (offsets (B, 2), flips (B,))."""
    views = views.long()
    cell, flips = views // 2, views % 2
    return torch.stack([cell // GRID, cell % GRID], dim=1), flips.bool()


class DeviceCifarLoader:
    """Iterates a CIFAR split held on ``device``; a drop-in for the host's DataLoader in the engine."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, mean: Sequence[float],
                 std: Sequence[float], device: torch.device, train: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False,
                 origin: Optional[np.ndarray] = None) -> None:
        if not train and world_size > 1:  # evaluation: each process takes every world_size-th image
            origin = (np.arange(len(labels)) if origin is None else np.asarray(origin))[rank::world_size]
            images, labels = images[rank::world_size], np.asarray(labels)[rank::world_size]
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.batch_size, self.train, self.device = batch_size, train, device
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.seed = seed
        self.epoch = 0
        self.dataset = self  # the engine and the host read len(loader.dataset)
        # each sample's index in the full split (the teacher-logit cache's row), on the CPU
        self.origin = torch.arange(len(labels)) if origin is None else torch.as_tensor(np.asarray(origin), dtype=torch.long)
        self.with_views = False  # True: train batches also carry each sample's view (teacher_cache.view_ids)

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        self.epoch = epoch
        if seed is not None:
            self.seed = seed

    def __len__(self) -> int:
        n = self._count()
        return -(-n // self._local_batch()) if self.train else -(-n // self.batch_size)

    def _count(self) -> int:
        n = len(self.labels)
        return n // self.world_size if self.train else n

    def _local_batch(self) -> int:
        # SOLVER.BATCH_SIZE is the global batch; each rank takes its share
        return max(1, self.batch_size // self.world_size)

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        # crops come out of the gather channels-last; the layout is what EXT.CHANNELS_LAST says, train and eval alike
        x = (images_u8.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, ...]]:
        n = len(self.labels)
        if not self.train:
            for start in range(0, n, self.batch_size):
                idx = slice(start, start + self.batch_size)
                yield self.normalize(self.images[idx]), self.labels[idx]
            return
        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed)
        yield from self.batches(*self.epoch_draws(g))

    def epoch_draws(self, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's (order, crop offsets, flips) for one epoch. All are drawn on the CPU
        generator, so every device gives the same epoch; under torch.distributed each rank takes
        an equal shard of the one global permutation and of the views drawn for it (so ranks crop
        and flip differently; one process draws exactly what it always drew)."""
        n = len(self.labels)
        per_rank = n // self.world_size
        mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        drawn = per_rank * self.world_size
        order = torch.randperm(n, generator=generator)[mine]
        offsets = torch.randint(0, 9, (drawn, 2), generator=generator)[mine]
        flips = (torch.rand(drawn, generator=generator) < 0.5)[mine]
        return order, offsets, flips

    def batches(self, order: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> Iterator[Tuple[torch.Tensor, ...]]:
        """(image, target, index) batches of the given order, cropped and flipped as drawn; with
        ``with_views`` also (..., view) with each sample's view index, on the CPU."""
        views = view_ids(offsets, flips) if self.with_views else None
        order, offsets, flips = order.to(self.device), offsets.to(self.device), flips.to(self.device)
        bs = self._local_batch()
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            crops = random_crop_flip(self.images[idx], offsets[start:start + bs], flips[start:start + bs])
            if views is None:
                yield self.normalize(crops), self.labels[idx], idx
            else:
                yield self.normalize(crops), self.labels[idx], idx, views[start:start + bs]

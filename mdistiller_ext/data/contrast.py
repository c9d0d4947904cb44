"""CRD's contrastive indices for a batch: each sample's positive and K negatives from the training split.

Each row is (positive, K negatives): the positive is the sample itself (``exact``) or a random sample of
its class (``relax``); the negatives are samples of the other classes, drawn without replacement (with
replacement only where K exceeds them), as the reference sampler of CRD draws them. The engine draws
from a generator it reseeds from (seed, epoch, rank), so a resumed run draws what the uninterrupted one
did, on any data path.
"""
from typing import Sequence

import torch

MODES = ("exact", "relax")


class NegativeSampler:
    def __init__(self, labels: Sequence[int], k: int, mode: str = "exact") -> None:
        if mode not in MODES:
            raise ValueError(f"contrast mode {mode!r} is not one of {', '.join(MODES)}")
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        self.k, self.mode, self.n = int(k), mode, len(labels)
        # samples sorted by class: class c holds positions [start[c], start[c] + count[c]) of ``order``
        self.order = torch.argsort(labels, stable=True)
        classes = int(labels.max()) + 1 if len(labels) else 0
        self.count = torch.bincount(labels, minlength=classes)
        self.start = torch.cumsum(self.count, 0) - self.count
        self.labels = labels

    def draw(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, K+1) long indices into the training split for the batch's samples ``index``, on index's device."""
        rows = []
        for i in index.cpu().tolist():
            c = int(self.labels[i])
            start, count = int(self.start[c]), int(self.count[c])
            others = self.n - count
            if self.k <= others:
                pos = torch.randperm(others, generator=generator)[:self.k]
            else:
                pos = torch.randint(0, others, (self.k,), generator=generator)
            negatives = self.order[pos + (pos >= start).long() * count]  # skip the class's own block
            if self.mode == "exact":
                positive = torch.tensor([i])
            else:
                positive = self.order[start + torch.randint(0, count, (1,), generator=generator)]
            rows.append(torch.cat([positive, negatives]))
        return torch.stack(rows).to(index.device)


def training_labels(loader) -> torch.Tensor:
    """The labels of a training loader's samples, by the index its batches carry (the device-resident
    loader, or a DataLoader over an ArrayDataset or an indexed ImageFolder)."""
    if hasattr(loader, "labels"):
        return torch.as_tensor(loader.labels).cpu()
    dataset = loader.dataset
    if hasattr(dataset, "labels"):
        return torch.as_tensor(dataset.labels)
    if hasattr(dataset, "inner"):
        return torch.as_tensor(dataset.inner.targets)
    raise TypeError(f"cannot read the labels of {type(dataset).__name__} for CRD's negatives")

"""The device-resident CIFAR pipeline against the host's torchvision/PIL semantics."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.data.datasets import CIFAR100_MEAN, CIFAR100_STD, cifar_transforms
from mdistiller_ext.data.loaders import fast_data_for as uses_fast_path
from mdistiller_ext.methods.dhkd import DHKD
from mdistiller_ext.errors import UserError
from mdistiller_ext.data.device import DeviceCifarLoader, random_crop_flip
from mdistiller_ext.host.standalone.models import cifar_model_dict

CPU = torch.device("cpu")


def test_crop_and_flip_reproduce_pil_pixels():
    rng = np.random.RandomState(0)
    imgs = rng.randint(0, 256, (64, 32, 32, 3)).astype(np.uint8)
    offsets = torch.from_numpy(rng.randint(0, 9, (64, 2)))
    flips = torch.from_numpy(rng.rand(64) < 0.5)
    out = random_crop_flip(torch.from_numpy(imgs).permute(0, 3, 1, 2), offsets, flips)
    for i in range(64):
        ref = TF.crop(TF.pad(Image.fromarray(imgs[i]), 4), int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flips[i]:
            ref = TF.hflip(ref)
        assert np.array_equal(np.asarray(ref), out[i].permute(1, 2, 0).numpy()), i


def coordinate_images(n: int) -> np.ndarray:
    """Channel 0 holds row + 1, channel 1 holds column + 1: a crop reveals its offsets and flip."""
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = np.arange(1, 33)[:, None]
    img[..., 1] = np.arange(1, 33)[None, :]
    return np.repeat(img[None], n, axis=0)


def raw_pixels(loader: DeviceCifarLoader, x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * loader.std + loader.mean)


def test_augmentation_statistics_over_many_draws():
    n = 9000
    loader = DeviceCifarLoader(coordinate_images(n), np.zeros(n), 500, (0.5,) * 3, (0.25,) * 3, CPU, True, seed=3)
    dys, dxs, flips = [], [], []
    for x, _, _ in loader:
        px = raw_pixels(loader, x)
        dys.append(px[:, 0, 20, 20] - 17)
        flipped = px[:, 1, 20, 21] < px[:, 1, 20, 20]
        flips.append(flipped)
        dxs.append(torch.where(flipped, px[:, 1, 20, 20] - 8, px[:, 1, 20, 20] - 17))
    dy, dx, fl = torch.cat(dys), torch.cat(dxs), torch.cat(flips)
    for offs in (dy, dx):
        counts = torch.bincount(offs.long(), minlength=9)
        assert len(counts) == 9 and counts.min() > 850 and counts.max() < 1150, counts  # 1000 +- 5 sigma
    assert abs(fl.float().mean().item() - 0.5) < 0.03


def test_epochs_are_reproducible_and_differ():
    imgs = np.random.RandomState(0).randint(0, 256, (100, 32, 32, 3)).astype(np.uint8)
    a = DeviceCifarLoader(imgs, np.arange(100) % 10, 32, CIFAR100_MEAN, CIFAR100_STD, CPU, True)
    b = DeviceCifarLoader(imgs, np.arange(100) % 10, 32, CIFAR100_MEAN, CIFAR100_STD, CPU, True)
    a.set_epoch(1, 11)
    b.set_epoch(1, 11)
    first = [x for x, _, _ in a]
    assert all(torch.equal(x, y) for x, (y, _, _) in zip(first, b))
    a.set_epoch(2, 12)
    assert not torch.equal(first[0], next(iter(a))[0])
    assert len(a) == 4 and [len(t) for _, t, _ in a] == [32, 32, 32, 4]


def test_distributed_shards_partition_the_epoch():
    imgs = np.zeros((50, 32, 32, 3), np.uint8)
    shards = []
    for rank in (0, 1):
        loader = DeviceCifarLoader(imgs, np.zeros(50), 10, (0.5,) * 3, (0.2,) * 3, CPU, True, seed=5, rank=rank, world_size=2)
        shards.append(torch.cat([i for _, _, i in loader]))
        assert len(loader) == 5  # 25 samples per rank, 5 per rank-batch of the global 10
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    assert len(set(shards[0].tolist()) | set(shards[1].tolist())) == 50


def test_fast_and_reference_paths_give_the_same_batch_and_loss():
    rng = np.random.RandomState(1)
    imgs, labels = rng.randint(0, 256, (16, 32, 32, 3)).astype(np.uint8), rng.randint(0, 100, 16)
    fast = DeviceCifarLoader(imgs, labels, 16, CIFAR100_MEAN, CIFAR100_STD, CPU, False)
    x_fast, y_fast = next(iter(fast))
    _, test_t = cifar_transforms(CIFAR100_MEAN, CIFAR100_STD)
    x_ref = torch.stack([test_t(Image.fromarray(i)) for i in imgs])
    assert torch.allclose(x_fast, x_ref, atol=1e-5)
    torch.manual_seed(0)
    cfg = registration.base_cfg()
    d = DHKD(cifar_model_dict["resnet8"][0](num_classes=100), cifar_model_dict["resnet8"][0](num_classes=100), cfg)
    d.train()
    for m in d.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    _, a = d(image=x_fast, target=y_fast, epoch=1)
    _, b = d(image=x_ref, target=torch.from_numpy(labels), epoch=1)
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-5)


def test_train_transform_is_the_hosts():
    train_t, _ = cifar_transforms(CIFAR100_MEAN, CIFAR100_STD)
    kinds = [type(t) for t in train_t.transforms]
    assert kinds == [transforms.RandomCrop, transforms.RandomHorizontalFlip, transforms.ToTensor, transforms.Normalize]
    assert train_t.transforms[0].padding == 4 and train_t.transforms[0].fill == 0


def test_fast_path_is_the_default_for_cifar_only():
    cfg = registration.base_cfg()
    for kind, expected in (("cifar100", True), ("cifar10", True), ("imagenet", False)):
        cfg.DATASET.TYPE = kind
        assert uses_fast_path(cfg) is expected, kind
    cfg.EXT.FAST_DATA = "off"
    cfg.DATASET.TYPE = "cifar100"
    assert uses_fast_path(cfg) is False
    cfg.EXT.FAST_DATA, cfg.DATASET.TYPE = "on", "imagenet"
    with pytest.raises(UserError, match="needs cifar10 or cifar100"):
        uses_fast_path(cfg)


def test_ranks_draw_different_views_one_process_draws_as_before():
    """Under torch.distributed each rank takes its share of the global permutation and of the views drawn
    for it (the ranks had all drawn the same crop and flip for their i-th sample); one process draws what
    it always drew (the formula before the change, written out here)."""
    images, labels = coordinate_images(40), np.arange(40) % 10

    def draws(rank, world):
        loader = DeviceCifarLoader(images, labels, 8, CIFAR100_MEAN, CIFAR100_STD, CPU, True, 0, rank, world)
        return loader.epoch_draws(torch.Generator().manual_seed(123))

    g = torch.Generator().manual_seed(123)
    before = (torch.randperm(40, generator=g), torch.randint(0, 9, (40, 2), generator=g), torch.rand(40, generator=g) < 0.5)
    one = draws(0, 1)
    assert all(torch.equal(a, b) for a, b in zip(one, before))
    shards = [draws(r, 2) for r in range(2)]
    for r, shard in enumerate(shards):
        for whole, part in zip(one, shard):
            assert torch.equal(part, whole[r * 20:(r + 1) * 20])
    assert not torch.equal(shards[0][1], shards[1][1]) and not torch.equal(shards[0][2], shards[1][2])


def test_epoch_seeding_differs_by_rank_and_keeps_rank_0():
    """Dropout masks (DHKD's nonlinear head) and the DataLoader path's draws come from a per-rank seed;
    rank 0's is the single-process seed, so one process's stream is unchanged."""
    from types import SimpleNamespace

    from mdistiller_ext.engine.distributed import DistInfo
    from mdistiller_ext.engine.trainer import Trainer, epoch_seed, rank_seed, seed_everything

    cfg = registration.base_cfg()
    cfg.EXT.SEED = 3
    loader = SimpleNamespace(generator=torch.Generator())

    def after_start(rank):
        stub = SimpleNamespace(cfg=cfg, dist=DistInfo(rank, 2, rank), train_loader=loader, contrast=None,
                               optimizer=SimpleNamespace(param_groups=[{}]))
        Trainer._start_epoch(stub, 5)
        return torch.rand(4), torch.rand(4, generator=loader.generator)

    seed_everything(epoch_seed(cfg, 5))
    single = torch.rand(4)
    r0, r1 = after_start(0), after_start(1)
    assert torch.equal(r0[0], single) and torch.equal(r0[1], torch.rand(4, generator=torch.Generator().manual_seed(epoch_seed(cfg, 5))))
    assert not torch.equal(r0[0], r1[0]) and not torch.equal(r0[1], r1[1])
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(8)}) == 8 and rank_seed(7, 1) == rank_seed(7, 1)

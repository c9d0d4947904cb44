"""Training throughput of this engine's fast path against a host-style pipeline, side by side.

host-style: torchvision PIL transforms per image, DataLoader with 2 workers, fp32 eager, a host
sync every step (loss.item() and accuracy on the CPU), as mdistiller's trainer does.
fast: this engine's own epoch loop (Trainer._train_loop) on the device-resident loader, with
EXT.AMP / EXT.CHANNELS_LAST at their auto settings and no per-step sync.
Both train the same DHKD distiller on the same images; the two alternate round by round and the
median per-step time is reported with the projected 50,000-image epoch time and the ratio.

python benchmarks/epoch_time.py [--pairs res56_res20 res32x4_res8x4] [--steps 20] [--rounds 3] [--batch 64]
"""
import argparse
import time

import torch
from torch.utils.data import DataLoader

from common import alternate, cifar_arrays, header, median, sync

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.data.datasets import CIFAR100_MEAN, CIFAR100_STD, ArrayDataset, cifar_transforms
from mdistiller_ext.methods.dhkd import DHKD
from mdistiller_ext.data.loaders import channels_last_for
from mdistiller_ext.engine.trainer import Trainer
from mdistiller_ext.data.device import DeviceCifarLoader
from mdistiller_ext.recipes import CIFAR100_PAIRS


def distiller(pair: str, device: torch.device) -> DHKD:
    p = CIFAR100_PAIRS[pair]
    torch.manual_seed(0)
    d = DHKD(host.cifar_model_dict[p.student][0](num_classes=100), host.cifar_model_dict[p.teacher][0](num_classes=100),
             registration.base_cfg())
    return d.to(device)


def host_style(pair, device, images, labels, batch, steps):
    d = distiller(pair, device)
    d.teacher.requires_grad_(False)
    opt = torch.optim.SGD(d.get_learnable_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    train_t, _ = cifar_transforms(CIFAR100_MEAN, CIFAR100_STD)
    loader = DataLoader(ArrayDataset(images, labels % 100, train_t, True), batch_size=batch, shuffle=True,
                        num_workers=2, persistent_workers=True, pin_memory=device.type == "cuda", drop_last=True)
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    def run() -> float:
        d.train()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            image, target, _ = next_batch()
            image, target = image.to(device, non_blocking=True), target.to(device, non_blocking=True)
            opt.zero_grad()
            logits, losses = d(image=image, target=target, epoch=1)
            loss = sum(v.mean() for v in losses.values())
            loss.backward()
            opt.step()
            # the host's per-step bookkeeping: both force a device sync
            loss.cpu().detach().numpy().mean()
            (logits.argmax(1) == target).float().sum().item()
        sync(device)
        return (time.perf_counter() - t0) / steps

    run()  # start the workers outside the timing
    return run


def fast(pair, device, images, labels, batch, steps):
    cfg = registration.base_cfg()
    cfg.EXT.PROGRESS = False
    cfg.SOLVER.BATCH_SIZE = batch
    cfg.freeze()
    n = steps * batch
    train = DeviceCifarLoader(images[:n], labels[:n] % 100, batch, CIFAR100_MEAN, CIFAR100_STD, device, True,
                              channels_last=channels_last_for(cfg, device))
    trainer = Trainer("bench", distiller(pair, device), train, None, cfg, device)
    epoch = [0]

    def run() -> float:
        epoch[0] += 1
        train.set_epoch(epoch[0], epoch[0])
        sync(device)
        t0 = time.perf_counter()
        trainer._train_loop(epoch[0])
        sync(device)
        return (time.perf_counter() - t0) / len(train)

    run()  # warm-up (cudnn autotuning, allocator)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["res56_res20", "res32x4_res8x4"])
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    images, labels, source = cifar_arrays(args.steps * args.batch * 2)
    lines = []
    for pair in args.pairs:
        times = alternate({"host-style": host_style(pair, device, images, labels, args.batch, args.steps),
                           "fast": fast(pair, device, images, labels, args.batch, args.steps)}, args.rounds)
        h, f = median(times["host-style"]), median(times["fast"])
        steps_per_epoch = -(-50000 // args.batch)
        lines.append(f"{pair:16s} {1000 * h:10.1f} {1000 * f:10.1f} {h * steps_per_epoch:11.0f} {f * steps_per_epoch:11.0f} {h / f:7.2f}")
    print(header(device, f"batch {args.batch} | {args.rounds} rounds x {args.steps} steps | data: {source}"))
    print(f"{'pair':16s} {'host ms/st':>10s} {'fast ms/st':>10s} {'host s/ep':>11s} {'fast s/ep':>11s} {'speedup':>7s}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

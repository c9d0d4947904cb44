"""The teacher-logit cache against the live teacher, side by side in one run.

1. Per student epoch, alternating round by round (medians): the live teacher; the cache with every
   view of the epoch already filled (a later run of a sweep); the cache empty (a first run: every
   view a miss, computed and written). KD, this engine's training step, the device-resident loader.
2. The build: the cost per image-view of filling the cache (teacher forward + write), so an
   up-front build of all 162 views is that times 162 x images.
3. The hit rate a real sweep meets, from the loader's own draws (no training): the study's split
   (45,000 training images, 15 epochs) for the 1st to 5th run of seeds 0..4 sharing one teacher,
   and one 240-epoch run.

python benchmarks/teacher_cache.py [--pairs res20_res8 res56_res20 res32x4_res8x4] [--images 1024]
                                   [--rounds 3] [--device auto]
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch

from common import alternate, header, median, sync

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.data import teacher_cache as tc
from mdistiller_ext.engine.step import StepSetup, train_step
from mdistiller_ext.engine.trainer import epoch_seed
from mdistiller_ext.data.device import DeviceCifarLoader, view_ids
from mdistiller_ext.methods.kd import KD

PAIRS = {"res20_res8": ("resnet20", "resnet8", 10), "res56_res20": ("resnet56", "resnet20", 100),
         "res32x4_res8x4": ("resnet32x4", "resnet8x4", 100)}
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


def build(pair: str, device: torch.device):
    teacher_name, student_name, classes = PAIRS[pair]
    cfg = registration.base_cfg()
    torch.manual_seed(0)
    s = host.cifar_model_dict[student_name][0](num_classes=classes)
    t = host.cifar_model_dict[teacher_name][0](num_classes=classes)
    d = KD(s, t, cfg).to(device)
    d.teacher.requires_grad_(False)
    d.train()
    setup = StepSetup.for_distiller(d)
    opt = torch.optim.SGD(setup.params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    return d, setup, opt, classes


def epoch_fn(d, setup, opt, loader, device, cached=None, reset=None):
    def run() -> float:
        if reset is not None:
            reset()
        loader.set_epoch(1, 12345)
        sync(device)
        start = time.perf_counter()
        for step, batch in enumerate(loader):
            extra = {}
            if cached is not None:
                extra["teacher_logits"] = cached.logits(batch[0], loader.origin[batch[2].cpu()], batch[3])
            train_step(d, opt, batch[0], batch[1], 1, setup, step, None, None, extra)
        sync(device)
        return time.perf_counter() - start
    return run


def epoch_times(pair: str, images: int, rounds: int, device: torch.device, root: str) -> dict:
    d, setup, opt, classes = build(pair, device)
    rng = np.random.RandomState(0)
    x, y = rng.randint(0, 256, (images, 32, 32, 3)).astype(np.uint8), rng.randint(0, classes, images)
    live_loader = DeviceCifarLoader(x, y, 64, MEAN, STD, device, True)
    key = tc.make_key(pair * 4, "cifar100", MEAN, STD, classes, pair, "fp32", PAIRS[pair][0])
    sizes = {"train": images, "test": 1}
    warm = tc.LogitStore.open(os.path.join(root, "warm"), key, sizes)
    cold_root = os.path.join(root, "cold")
    cached_loader = DeviceCifarLoader(x, y, 64, MEAN, STD, device, True)
    cached_loader.with_views = True
    warm_teacher = tc.CachedTeacher(d.teacher, warm)
    epoch_fn(d, setup, opt, cached_loader, device, warm_teacher)()  # fill this epoch's views
    state = {}

    def fresh_cold():
        import shutil

        shutil.rmtree(cold_root, ignore_errors=True)
        state["cold"] = tc.CachedTeacher(d.teacher, tc.LogitStore.open(cold_root, key, sizes))

    class Cold:  # the empty cache, made anew before each timed epoch (outside the timing)
        def logits(self, *a):
            return state["cold"].logits(*a)

    fns = {"live": epoch_fn(d, setup, opt, live_loader, device),
           "cache, views filled": epoch_fn(d, setup, opt, cached_loader, device, warm_teacher),
           "cache, empty (first run)": epoch_fn(d, setup, opt, cached_loader, device, Cold(), reset=fresh_cold)}
    fns["cache, empty (first run)"]()  # warm-up of every path
    times = alternate(fns, rounds)
    # the build: teacher forward + write per image-view, in batches of 512 (an up-front build's size)
    build_store = tc.LogitStore.open(os.path.join(root, "build"), key, sizes)
    builder = tc.CachedTeacher(d.teacher, build_store)
    imgs = torch.randn(512, 3, 32, 32, device=device)
    rows = torch.arange(512) % images
    sync(device)
    start = time.perf_counter()
    for v in range(4):
        builder.logits(imgs, rows, torch.full((512,), v + 100))
    sync(device)
    per_view = (time.perf_counter() - start) / (4 * 512)
    return {k: median(v) for k, v in times.items()} | {"build_s_per_image_view": per_view}


def simulated_hit_rates(n_images: int = 45000, epochs: int = 15, runs: int = 5):
    """(for seeds 0..runs-1 in turn, the fraction of each run's views that earlier runs and its own earlier
    epochs met; the fraction of all views filled at the end)."""
    filled = np.zeros((n_images, tc.VIEWS), dtype=bool)
    loader = DeviceCifarLoader(np.zeros((n_images, 1, 1, 3), np.uint8), np.zeros(n_images), 64, MEAN, STD,
                               torch.device("cpu"), True)
    cfg = registration.base_cfg()
    out = []
    for seed in range(runs):
        cfg.EXT.SEED = seed
        hits = total = 0
        for epoch in range(1, epochs + 1):
            g = torch.Generator()
            g.manual_seed(epoch_seed(cfg, epoch))
            order, offsets, flips = loader.epoch_draws(g)
            views = view_ids(offsets, flips).numpy()
            rows = order.numpy()
            hits += int(filled[rows, views].sum())
            total += len(rows)
            filled[rows, views] = True
        out.append(hits / total)
    return out, float(filled.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--images", type=int, default=1024, help="images per timed epoch (synthetic)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    print(header(device, f"KD, batch 64, {args.images} synthetic images per epoch, fp32, {args.rounds} rounds"))
    print("\n| pair | live s/epoch | cached (views filled) | speed-up | cache empty (first run) | x live | "
          "build per image-view (ms) | full build, 50,000 images x 162 views |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for pair in args.pairs:
            r = epoch_times(pair, args.images, args.rounds, device, os.path.join(root, pair))
            live, warm, cold = r["live"], r["cache, views filled"], r["cache, empty (first run)"]
            build_full = r["build_s_per_image_view"] * 50000 * tc.VIEWS
            print(f"| {pair} | {live:.2f} | {warm:.2f} | {live / warm:.2f}x | {cold:.2f} | {cold / live:.2f}x | "
                  f"{1000 * r['build_s_per_image_view']:.3f} | {build_full / 3600:.2f} h |", flush=True)
    rates, _ = simulated_hit_rates()
    print("\nHit rate of a sweep sharing one teacher (the study's split: 45,000 images, 15 epochs; seeds 0..4), "
          "from the loader's own draws:")
    print("| run | 1st | 2nd | 3rd | 4th | 5th |\n|---|---|---|---|---|---|")
    print("| hit rate | " + " | ".join(f"{100 * r:.1f}%" for r in rates) + " |")
    (long_run,), filled = simulated_hit_rates(n_images=50000, epochs=240, runs=1)
    print(f"\nOne 240-epoch run on 50,000 images: {100 * long_run:.1f}% of its views hit; by its end "
          f"{100 * filled:.1f}% of all 162 x 50,000 views are filled (a live teacher computes 240 per image, "
          f"this run {240 * (1 - long_run):.0f}).")


if __name__ == "__main__":
    main()

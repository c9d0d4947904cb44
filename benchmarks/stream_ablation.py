"""Where does a data-path difference come from: the pixels, or the random stream?

Runs tools/train.py's code path (mdistiller_ext.cli.train) with the training loader swapped for one that keeps
the fast path's order and crop/flip draws but changes one piece:

  fast        the fast path itself (device-resident crops), as a control
  pil-pixels  the same order and draws, pixels made by torchvision's PIL functions per image
              (pad, crop, flip, to_tensor, normalize): isolates the pixel pipeline
  skip2       the fast path after drawing one extra int64 from the epoch's generator before the
              permutation (as the DataLoader's iterator does): a different but statistically
              identical random stream

If `fast` and `pil-pixels` end alike, the fast path's pixels are not the cause of a gap; if
`fast` and `skip2` differ, the protocol is sensitive to the stream realisation itself.

python benchmarks/stream_ablation.py --mode pil-pixels [tools/train.py arguments...]
e.g. python benchmarks/stream_ablation.py --mode skip2 --cfg configs/cifar10/kd/res20_res8.yaml \
         EXT.SEED 1 SOLVER.EPOCHS 3 EXT.TRAIN_SUBSET 10000
"""
import argparse
import os
import sys
from typing import Iterator, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms.functional as TF  # noqa: E402
from PIL import Image  # noqa: E402

from mdistiller_ext.cli import train as train_cli  # noqa: E402
from mdistiller_ext.data import loaders  # noqa: E402
from mdistiller_ext.data.datasets import normalization  # noqa: E402
from mdistiller_ext.data.loaders import fast_data_for  # noqa: E402
from mdistiller_ext.data.device import DeviceCifarLoader  # noqa: E402

MODES = ("fast", "pil-pixels", "skip2")


class AblationLoader:
    """The fast loader's epoch (order, offsets, flips) with one piece changed by ``mode``."""

    def __init__(self, fast: DeviceCifarLoader, images_hwc, mean, std, mode: str) -> None:
        self.fast, self.images_hwc, self.mean, self.std, self.mode = fast, images_hwc, mean, std, mode
        self.dataset = fast

    def set_epoch(self, epoch: int, seed: int) -> None:
        self.fast.set_epoch(epoch, seed)

    def __len__(self) -> int:
        return len(self.fast)

    def _pil_batches(self, order: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor):
        f = self.fast
        for s in range(0, len(order), f.batch_size):
            idx, off, fl = order[s:s + f.batch_size], offsets[s:s + f.batch_size], flips[s:s + f.batch_size]
            out = []
            for i, (top, left), flip in zip(idx.tolist(), off.tolist(), fl.tolist()):
                img = TF.crop(TF.pad(Image.fromarray(self.images_hwc[i]), 4), top, left, 32, 32)
                out.append(TF.normalize(TF.to_tensor(TF.hflip(img) if flip else img), self.mean, self.std))
            idx = idx.to(f.device)
            yield torch.stack(out).to(f.device), f.labels[idx], idx

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, ...]]:
        g = torch.Generator()
        g.manual_seed(self.fast.seed)
        if self.mode == "skip2":
            torch.empty((), dtype=torch.int64).random_(generator=g)
        draws = self.fast.epoch_draws(g)  # what the fast path's own epoch draws from the same generator
        yield from self._pil_batches(*draws) if self.mode == "pil-pixels" else self.fast.batches(*draws)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    p.add_argument("--mode", choices=MODES, required=True)
    args, rest = p.parse_known_args()
    real = loaders.get_loaders

    def get_loaders(cfg, generator=None, device=None, rank=0, world_size=1):
        if world_size != 1 or not fast_data_for(cfg):
            raise SystemExit("error: the ablation needs one process and the fast path (EXT.FAST_DATA auto or on)")
        got = real(cfg, generator, device, rank, world_size)
        images = np.ascontiguousarray(got.train.images.permute(0, 2, 3, 1).cpu().numpy())  # HWC uint8, as PIL wants
        mean, std = normalization(cfg.DATASET.TYPE)
        return got._replace(train=AblationLoader(got.train, images, mean, std, args.mode))

    loaders.get_loaders = get_loaders  # the trainer's command line imports it at call time
    if not any(o == "EXPERIMENT.NAME" for o in rest):
        # keep the ablation's runs apart from ordinary runs of the same config
        rest += ["EXPERIMENT.NAME", f"ablation_{args.mode.replace('-', '_')}"]
    return train_cli.main(rest)


if __name__ == "__main__":
    sys.exit(main())

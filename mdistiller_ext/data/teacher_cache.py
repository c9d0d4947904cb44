"""The teacher-logit cache: the frozen teacher's logits for every augmented view of every CIFAR
training image, on disk, filled as the views are met.

RandomCrop(32, padding=4) + RandomHorizontalFlip has 9 x 9 x 2 = 162 views of an image. The
teacher is in eval mode, so its logits for a view never change: a student step needs the teacher
only for the views no earlier step (of this run or any run with the same key) has met.

Design (why lazy): each step looks its (image, view) pairs up, runs the teacher on the misses
only and writes them. No view is ever computed twice and none is computed that no run needed, so
a run's teacher work is at most the live teacher's (the first run pays the lookups, nothing
more) and every later run pays less. An up-front build (``tools/teacher_cache.py --build``, with a
progress bar) is there for those who want every view ready, e.g. before a sweep.

Layout: ``<dir>/<id>/`` with ``record.json`` (the key, the split sizes, fill cost), ``train.logits``
(float32, [full train split, 162, classes], a sparse memory-mapped file), ``train.check`` (int32
[images, 162]: a checksum of each entry, 0 = empty) and ``lock``. Only training views are kept:
evaluation runs the student alone, and nothing reads a teacher's test-split logits. An entry counts only when its checksum matches its values,
its image and its view: an entry a killed process left half-written, a torn read while another
process writes, or an altered file is never used (it is computed again). Writers take an
exclusive lock; readers need none. The id is a hash of the key: the teacher file's sha256, the
dataset, its normalisation, a fingerprint of the training images, the class count and the
precision the teacher runs in, TF32 included (cached logits are what the live teacher computes in
the run's precision). The memory layout (channels-last) is not in the key: it moves a teacher's
logits by rounding only (8.6e-6 on logits up to 15, a CIFAR-100 resnet20 on the CPU), as much as
running the same images in batches of another size does (5.7e-6), which no cache can avoid. So a
cached and a live run of one seed are not bitwise the same run: their teacher logits agree to about
1e-5 (tested), and they are pooled as the same experiment.
"""
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from mdistiller_ext.atomic import write_text
from mdistiller_ext.errors import UserError
from mdistiller_ext.data.device import VIEWS, random_crop_flip, view_params

FORMAT = 1
_MASK = 0xFFFFFFFF


def checksum(values: torch.Tensor, rows: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """An int32 checksum of each float32 row of ``values`` with its (row, view) position, never 0.

    Each 32-bit word is multiplied by an odd constant of its column (a change of one word always
    changes the sum modulo 2**32) and the position is mixed in, so a row written to the wrong place
    fails too. All in int64 with every partial product masked to 32 bits: no overflow anywhere."""
    bits = values.contiguous().view(torch.int32).to(torch.int64) & _MASK
    mult = (torch.arange(values.shape[1], device=values.device, dtype=torch.int64) * 2 + 1) * 0x9E3779B1 & 0x7FFFFFFF | 1
    h = ((bits * mult) & _MASK).sum(dim=1) + rows.to(torch.int64) * 0x85EBCA77 + views.to(torch.int64) * 0xC2B2AE3D
    h = (h ^ (h >> 32)) & _MASK
    h = torch.where(h == 0, torch.ones_like(h), h)
    return torch.where(h >= 2 ** 31, h - 2 ** 32, h).to(torch.int32)


def data_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the full training split's pixels and labels (the cache is indexed by its order)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    return h.hexdigest()


def make_key(teacher_sha256: str, dataset: str, mean, std, num_classes: int, fingerprint: str,
             precision: str, teacher_name: str) -> Dict[str, object]:
    return {"format": FORMAT, "teacher_sha256": teacher_sha256, "teacher": teacher_name, "dataset": dataset,
            "mean": [float(m) for m in mean], "std": [float(s) for s in std], "num_classes": int(num_classes),
            "train_images_sha256": fingerprint, "precision": precision, "views": VIEWS, "dtype": "float32"}


def key_id(key: Dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class LogitStore:
    """One cache directory, memory-mapped. ``lookup`` and ``store`` take CPU index tensors."""

    def __init__(self, path: str, key: Dict[str, object], sizes: Dict[str, int]) -> None:
        self.path, self.key, self.sizes = path, key, sizes
        self.id = os.path.basename(path)
        c = int(key["num_classes"])
        self.shape = (sizes["train"], VIEWS, c)
        self.logits = self._map("train.logits", np.float32, self.shape)
        self.check = self._map("train.check", np.int32, self.shape[:-1])
        self.written = 0
        self.rejected = 0  # entries whose checksum did not match (half-written, torn or altered): computed again
        self.mirror: Optional[Dict[str, torch.Tensor]] = None  # the train entries in device memory (mirror_to)

    def train_bytes(self) -> int:
        return self.logits.numel() * 4 + self.check.numel() * 4

    def mirror_to(self, device: torch.device) -> None:
        """Keep a copy of the train entries on ``device``: lookups gather there, writes go to both. Entries
        another process writes later are not seen (they are computed again and rewritten, equal)."""
        self.mirror = {"logits": self.logits.to(device), "check": self.check.to(device)}

    def _map(self, name: str, dtype, shape) -> torch.Tensor:
        file = os.path.join(self.path, name)
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        size = os.path.getsize(file) if os.path.isfile(file) else -1
        if size != expected:
            raise UserError(f"teacher-logit cache {self.path}: {name} has {size} bytes, expected {expected} "
                            f"(truncated or from another layout); delete {self.path} and run again")
        # torch shares the memory map: lookups and writes go straight to the page cache, seen by every process
        return torch.from_numpy(np.memmap(file, dtype=dtype, mode="r+", shape=tuple(shape)))

    @classmethod
    def open(cls, root: str, key: Dict[str, object], sizes: Dict[str, int]) -> "LogitStore":
        """Open the cache of ``key`` under ``root``, creating it (atomically: a whole directory renamed
        into place, so two runs starting at once share one) if there is none."""
        path = os.path.join(root, key_id(key))
        if not os.path.isdir(path):
            cls._create(root, path, key, sizes)
        record = cls.read_record(path)
        if record.get("key") != key or record.get("sizes") != sizes:
            diff = [k for k in sorted(set(key) | set(record.get("key", {}))) if key.get(k) != record.get("key", {}).get(k)]
            raise UserError(f"teacher-logit cache {path} was made for another teacher or data "
                            f"({', '.join(diff) or 'sizes'} differ); delete it or set EXT.TEACHER_CACHE_DIR elsewhere")
        return cls(path, key, sizes)

    @staticmethod
    def read_record(path: str) -> Dict[str, object]:
        try:
            with open(os.path.join(path, "record.json")) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"teacher-logit cache {path}: unreadable record.json ({e}); delete {path} and run again") from None

    @staticmethod
    def disk_bytes(key: Dict[str, object], sizes: Dict[str, int]) -> int:
        c = int(key["num_classes"])
        return sizes["train"] * VIEWS * (c * 4 + 4)

    @classmethod
    def _create(cls, root: str, path: str, key: Dict[str, object], sizes: Dict[str, int]) -> None:
        os.makedirs(root, exist_ok=True)
        tmp = f"{path}.tmp.{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        c = int(key["num_classes"])
        for name, n in (("train.logits", sizes["train"] * VIEWS * c * 4), ("train.check", sizes["train"] * VIEWS * 4)):
            with open(os.path.join(tmp, name), "wb") as f:
                f.truncate(n)  # sparse: disk is used as entries are written
        open(os.path.join(tmp, "lock"), "w").close()
        record = {"key": key, "sizes": sizes, "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                  "fill": {"entries": 0, "teacher_cpu_s": 0.0, "teacher_wall_s": 0.0, "runs": 0}}
        with open(os.path.join(tmp, "record.json"), "w") as f:
            json.dump(record, f, indent=1)
        try:
            os.rename(tmp, path)
        except OSError:  # another process made it first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(path):
                raise

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(os.path.join(self.path, "lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def lookup(self, rows: torch.Tensor, views: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), hit (B,)) for full-split ``rows`` seen in ``views``; a miss's row is garbage.
        On the mirror's device where there is one (then ``rows`` and ``views`` may live there too)."""
        if self.mirror is not None:
            device = self.mirror["logits"].device
            rows, views = rows.to(device), views.to(device)
            stored, values = self.mirror["check"][rows, views], self.mirror["logits"][rows, views]
        else:
            rows, views = rows.cpu(), views.cpu()
            stored, values = self.check[rows, views], self.logits[rows, views]
        hit = stored != 0
        if bool(hit.any()):
            ok = checksum(values, rows, views) == stored
            self.rejected += int((hit & ~ok).sum())
            hit &= ok
        return values, hit

    def store(self, rows: torch.Tensor, views: torch.Tensor, values: torch.Tensor) -> None:
        """Write entries: values first, then their checksums, under the lock (a half-written entry never counts)."""
        if rows.numel() == 0:
            return
        values = values.detach().float().cpu().contiguous()
        rows, views = rows.cpu(), views.cpu()
        sums = checksum(values, rows, views)
        with self.locked():
            self.logits[rows, views] = values
            self.check[rows, views] = sums
        if self.mirror is not None:
            device = self.mirror["logits"].device
            self.mirror["logits"][rows.to(device), views.to(device)] = values.to(device)
            self.mirror["check"][rows.to(device), views.to(device)] = sums.to(device)
        self.written += int(rows.numel())

    def filled(self) -> float:
        """Fraction of the entries that hold a value (checksums are verified only on lookup)."""
        return float((self.check != 0).float().mean())

    def add_fill_cost(self, entries: int, cpu_s: float, wall_s: float) -> None:
        """Add a run's fill to record.json (only when it wrote something: a fully cached run changes nothing)."""
        if entries == 0:
            return
        with self.locked():
            record = self.read_record(self.path)
            fill = record.setdefault("fill", {})
            fill["entries"] = int(fill.get("entries", 0)) + entries
            fill["teacher_cpu_s"] = round(float(fill.get("teacher_cpu_s", 0.0)) + cpu_s, 2)
            fill["teacher_wall_s"] = round(float(fill.get("teacher_wall_s", 0.0)) + wall_s, 2)
            fill["runs"] = int(fill.get("runs", 0)) + 1
            write_text(os.path.join(self.path, "record.json"), json.dumps(record, indent=1))


class CachedTeacher:
    """The teacher's logits for a batch of training views: cached entries where valid, the teacher's
    forward pass (in the run's precision, eval mode) on the rest, which are then written."""

    def __init__(self, teacher: nn.Module, store: LogitStore, amp: Optional[torch.dtype] = None) -> None:
        self.teacher, self.store, self.amp = teacher, store, amp
        self.hits = self.misses = 0          # this epoch
        self.cpu_s = self.wall_s = 0.0
        self._pinned: Optional[torch.Tensor] = None
        self._copied = None

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(images.device.type, dtype=self.amp, enabled=self.amp is not None):
            return self.teacher(images)[0].float()

    def logits(self, images: torch.Tensor, rows: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) on the images' device for full-split ``rows`` seen in ``views``."""
        values, hit = self.store.lookup(rows, views)
        miss = (~hit).nonzero().squeeze(1)
        n_miss = int(miss.numel())  # one synchronisation a step on a GPU: the miss count decides the work
        self.hits += int(hit.numel()) - n_miss
        self.misses += n_miss
        out = self._to_device(values, images.device)
        if n_miss:
            wall, cpu = time.perf_counter(), time.process_time()
            computed = self._forward(images[miss.to(images.device)])
            miss_cpu = miss.cpu()
            self.store.store(rows.cpu()[miss_cpu], views.cpu()[miss_cpu], computed)
            self.wall_s += time.perf_counter() - wall
            self.cpu_s += time.process_time() - cpu
            out[miss.to(images.device)] = computed.to(out.dtype)
        return out

    def _to_device(self, values: torch.Tensor, device: torch.device) -> torch.Tensor:
        if values.device == device:
            return values
        if device.type != "cuda":
            return values.to(device)
        # gathered on the CPU: through a reused pinned buffer, so the copy is asynchronous
        if self._copied is not None:
            self._copied.synchronize()  # the previous step's copy has read the buffer
        if self._pinned is None or self._pinned.shape[0] < values.shape[0] or self._pinned.shape[1:] != values.shape[1:]:
            self._pinned = torch.empty(values.shape, dtype=values.dtype).pin_memory()
        buf = self._pinned[:values.shape[0]]
        buf.copy_(values)
        out = buf.to(device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out

    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def epoch_state(self) -> Dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def load_epoch_state(self, state: Dict[str, int]) -> None:
        self.hits, self.misses = int(state["hits"]), int(state["misses"])

    def take_counts(self) -> Dict[str, float]:
        """This epoch's hit rate (worklog ``teacher_cache_hit``), then the counters restart."""
        rate = self.hit_rate()
        self.hits = self.misses = 0
        return {"teacher_cache_hit": 100.0 * rate}

    def finish(self) -> None:
        self.store.add_fill_cost(self.store.written, self.cpu_s, self.wall_s)
        self.store.written = 0
        self.cpu_s = self.wall_s = 0.0


def build(cached: CachedTeacher, train, batch: int = 512, progress: Optional[Callable[[int], None]] = None) -> None:
    """Fill every entry still missing: each of the 162 views of every training image. ``train`` is a
    DeviceCifarLoader of the full training split (its images and normalisation). Resumable and safe to kill: filled entries are skipped, and an entry counts only
    once fully written."""
    n = len(train.labels)
    for view in range(VIEWS):
        offsets, flips = view_params(torch.tensor([view]))
        for start in range(0, n, batch):
            rows = torch.arange(start, min(n, start + batch))
            crops = random_crop_flip(train.images[rows.to(train.device)], offsets.expand(len(rows), 2).to(train.device),
                                     flips.expand(len(rows)).to(train.device))
            cached.logits(train.normalize(crops), rows, torch.full_like(rows, view))
            if progress is not None:
                progress(len(rows))


def place(store: LogitStore, device: torch.device, share: float = 0.5) -> str:
    """On a GPU, keep the train entries in device memory when they take at most ``share`` of what is
    free; else (and on the CPU) lookups gather from the memory-mapped file. Returns where they are."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if store.train_bytes() <= share * free:
            store.mirror_to(device)
            return "device memory"
        return "CPU memory, pinned copies"
    return "memory-mapped file"


def default_dir(cfg) -> str:
    return cfg.EXT.TEACHER_CACHE_DIR or os.path.join(cfg.EXT.DATA_CACHE, "teacher_logits")


def why_not(cfg, distiller: nn.Module, train_loader, host_engine: bool, teacher_info: Optional[Dict[str, object]]) -> str:
    """Why the cache cannot serve this run ('' where it can)."""
    if host_engine:
        return "mdistiller's trainers compute the teacher themselves"
    if not getattr(type(distiller), "TEACHER_LOGITS_ONLY", False):
        return f"{cfg.DISTILLER.TYPE} reads more of the teacher than its logits"
    if cfg.DATASET.TYPE not in ("cifar10", "cifar100") or not hasattr(train_loader, "epoch_draws"):
        return "it needs CIFAR on the device-resident data path (EXT.FAST_DATA auto or on)"
    if not teacher_info or len(str(teacher_info.get("sha256", ""))) != 64:
        return "the teacher is not a checkpoint file"
    return ""


def for_run(cfg, distiller: nn.Module, train_loader, host_engine: bool, teacher_info: Optional[Dict[str, object]],
            fingerprint: Dict[str, object], precision: str) -> Tuple[Optional[LogitStore], str]:
    """EXT.TEACHER_CACHE resolved for one run: (the store or None, one line saying what was decided)."""
    mode = cfg.EXT.TEACHER_CACHE
    if mode == "off":
        return None, "teacher logits: live (EXT.TEACHER_CACHE off)"
    reason = why_not(cfg, distiller, train_loader, host_engine, teacher_info)
    root = default_dir(cfg)
    key = sizes = None
    if not reason:
        key = make_key(str(teacher_info["sha256"]), cfg.DATASET.TYPE, fingerprint["mean"], fingerprint["std"],
                       fingerprint["num_classes"], fingerprint["sha256"], precision, cfg.DISTILLER.TEACHER)
        sizes = {"train": int(fingerprint["images"]), "test": int(fingerprint["test_images"])}
        if not os.path.isdir(os.path.join(root, key_id(key))):
            need = LogitStore.disk_bytes(key, sizes)
            os.makedirs(root, exist_ok=True)
            free = shutil.disk_usage(root).free
            if free < 1.2 * need:
                reason = f"it needs {need / 2**30:.1f} GiB on disk at {root} and {free / 2**30:.1f} GiB are free"
    if reason:
        if mode == "on":
            raise UserError(f"config EXT.TEACHER_CACHE = 'on' cannot apply: {reason}; set it to auto or off")
        return None, f"teacher logits: live (teacher cache off: {reason})"
    store = LogitStore.open(root, key, sizes)
    return store, (f"teacher logits: cache {store.id} at {store.path} ({100 * store.filled():.1f}% of the views filled; "
                   "the rest are computed as they are met and kept)")

"""The standalone training engine: CPU or CUDA, the host's outputs, exact resume.

Follows the host trainer's contract (constructed with experiment_name, distiller, loaders and
cfg; ``train(resume)``), writes the same run directory (worklog.txt, train.events, latest,
student_latest, best, student_best, epoch_N, student_N), and adds what the host lacks:
seeding, atomic checkpoints with RNG state and the config, no per-step host sync, a non-finite
guard, and the gradient-alignment step (SOLVER.TRAINER "align").
"""
import functools
import hashlib
import os
import random
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm
from yacs.config import CfgNode

from mdistiller_ext.host import adapter as host
from mdistiller_ext.runs import provenance
from mdistiller_ext.runs import worklog
from mdistiller_ext.atomic import interrupts_deferred, write_text
from mdistiller_ext.runs.checkpoint import SNAPSHOT, discard, load_safe, save_atomic
from mdistiller_ext.config import write_config
from mdistiller_ext.engine.runtime import Runtime, resolve
from mdistiller_ext.errors import UserError
from mdistiller_ext.engine.evaluate import evaluate, topk_correct
from mdistiller_ext.methods.base import hook
from mdistiller_ext.engine.step import NonFiniteGuard, StepSetup, train_step
from mdistiller_ext.engine import snapshot, wandb_log
from mdistiller_ext.engine.probe import GradProbe
from mdistiller_ext.runs.pooling import config_differences
from mdistiller_ext.engine.distributed import (SINGLE, DistInfo, all_reduce_mean_, all_reduce_sum, average_buffers_,
                                               barrier)

CHECK_EVERY = 50  # steps between progress-bar refreshes and non-finite checks (each one syncs) ...
REFRESH_SECONDS = 5.0  # ... or sooner when this much time has passed, however few the steps
LOG_SECONDS = 60.0  # without a terminal (logs of sweeps, nohup, CI): a progress line at most this often


def learning_rate(epoch: int, cfg: CfgNode) -> float:
    """The host's step schedule: LR * RATE ** (number of stages with epoch > stage)."""
    passed = sum(epoch > s for s in cfg.SOLVER.LR_DECAY_STAGES)
    return cfg.SOLVER.LR * cfg.SOLVER.LR_DECAY_RATE ** passed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def epoch_seed(cfg: CfgNode, epoch: int) -> int:
    # every epoch's randomness depends only on (seed, epoch), so a resumed run repeats it exactly
    return cfg.EXT.SEED * 1_000_003 + epoch


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``: ``seed`` itself on rank 0 (one process's stream is unchanged), a
    hash of (seed, rank) elsewhere, so that ranks draw different dropout masks and augmentations."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{rank}".encode()).digest()[:7], "big")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class NonFiniteError(UserError):
    pass


class Trainer:
    def __init__(self, experiment_name: str, distiller: nn.Module, train_loader, val_loader, cfg: CfgNode,
                 device: torch.device, force_resume: bool = False, dist_info: DistInfo = SINGLE,
                 teacher_info: Optional[Dict[str, object]] = None, holdout_loader=None,
                 teacher_store=None, data_record: Optional[Dict[str, object]] = None,
                 runtime: Optional[Runtime] = None) -> None:
        self.cfg = cfg
        # what every auto resolved to (runtime.resolve, once per run); a library caller may leave it out
        self.rt = runtime if runtime is not None else resolve(cfg, world_size=dist_info.world_size,
                                                              local_rank=dist_info.local_rank)
        self.holdout_loader = holdout_loader
        self.data_record = data_record or {}
        self.dist = dist_info
        self.teacher_info = teacher_info
        self.channels_last = self.rt.channels_last
        self.amp = self.rt.amp
        if hasattr(distiller, "teacher"):
            distiller.teacher.requires_grad_(False)  # frozen; DDP then ignores it
        if dist_info.enabled and cfg.EXT.SYNC_BN:
            distiller.student = nn.SyncBatchNorm.convert_sync_batchnorm(distiller.student)
        self.distiller = distiller.to(device, memory_format=torch.channels_last) if self.channels_last else distiller.to(device)
        if cfg.EXT.COMPILE:
            if cfg.SOLVER.TRAINER == "align" or cfg.EXT.GRAD_PROBE_EVERY > 0:
                # alignment and the probe differentiate the graph twice (retain_graph); compiled backwards
                # donate their buffers unless told not to (torch's own advice in the error it raises)
                import torch._functorch.config as functorch_config

                if hasattr(functorch_config, "donated_buffer"):
                    functorch_config.donated_buffer = False
            # in place, so state_dict keys (and checkpoints) stay those of the plain modules
            for module in self.distiller.children():
                module.compile()
        self.model = self.distiller
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.distiller, device_ids=[device.index] if device.type == "cuda" else None)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device = device
        self.force_resume = force_resume
        self.experiment_name = experiment_name
        self.log_path = os.path.join(cfg.LOG.PREFIX, experiment_name)
        self.wandb = False
        self._epoch_seconds: List[float] = []
        self.setup = StepSetup.for_distiller(
            self.distiller, align=cfg.SOLVER.TRAINER == "align", amp=self.amp,
            scaler=torch.amp.GradScaler(device.type) if self.amp == torch.float16 else None,
            reduce=all_reduce_mean_ if dist_info.enabled else None)
        self.optimizer = torch.optim.SGD(hook(self.distiller, "param_groups")(), lr=cfg.SOLVER.LR,
                                         momentum=cfg.SOLVER.MOMENTUM, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        self.cached = None
        if teacher_store is not None:
            from mdistiller_ext.data.teacher_cache import CachedTeacher, place

            self.cached = CachedTeacher(self.distiller.teacher, teacher_store, self.amp)
            self.cache_place = place(teacher_store, device)
            self._origin = train_loader.origin.to(device)  # batch indices -> full-split rows, on the device
            train_loader.with_views = True
        self.contrast = None  # CRD: each step's positives and negatives, drawn from a generator reseeded every epoch
        spec = hook(self.distiller, "contrast_spec")()
        if spec is not None:
            from mdistiller_ext.data.contrast import NegativeSampler, training_labels

            self.contrast = NegativeSampler(training_labels(train_loader), *spec)
            self.contrast_generator = torch.Generator()
        self.guard = NonFiniteGuard(cfg.EXT.NONFINITE, device)
        # one process only: under torchrun each process would need its own random states in the file
        self.snapshots = snapshot.Clock(0.0 if dist_info.enabled else cfg.EXT.SNAPSHOT_MINUTES)
        self._position: Optional[Dict[str, object]] = None  # the in-epoch snapshot a resume continues from
        self.best_acc = -1.0
        self.writer = None
        every = cfg.EXT.GRAD_PROBE_EVERY
        self.probe = GradProbe(every, self.distiller.student, self.setup.split, self.setup.scaler) if every > 0 else None

    def runtime(self) -> Dict[str, object]:
        """What this run's ``auto`` settings resolved to (recorded in runtime.json and the worklog)."""
        fast = hasattr(self.train_loader, "set_epoch")  # what the loaders are, as built from the runtime
        info = provenance.describe("mdistiller_ext engine", self.device, self.amp, self.channels_last,
                                   "device-resident (fast)" if fast else "DataLoader (PIL transforms)",
                                   "host (mdistiller)" if host.HAS_MDISTILLER else "standalone",
                                   self.dist.world_size, bool(self.cfg.EXT.COMPILE), self.teacher_info)
        if self.teacher_info is not None:
            info["teacher_logits"] = f"cache {self.cached.store.id} ({self.cache_place})" if self.cached is not None else "live"
        for key in ("data_source", "val_split"):
            if key in self.data_record:
                info[key] = self.data_record[key]
        return info

    # ----- run -----
    def train(self, resume: bool = False) -> float:
        main = self.dist.is_main
        if main:
            os.makedirs(self.log_path, exist_ok=True)
        barrier()
        epoch = self._resume() + 1 if resume else 1
        barrier()
        first, wall0, cpu0 = epoch, time.time(), time.process_time()
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall0))

        def record_cost(last: int) -> None:
            provenance.record_cost(self.log_path, first, last, time.time() - wall0, time.process_time() - cpu0, started)

        at_step = int(self._position["step"]) if self._position is not None else None
        if main and resume:
            where = f"after epoch {epoch - 1}" if at_step is None else \
                f"in epoch {epoch} at step {at_step}/{len(self.train_loader)} (its snapshot)"
            print(f"resuming {self.log_path} {where} (best so far {self.best_acc:.2f}); "
                  + (f"epoch {epoch} to go" if epoch == self.cfg.SOLVER.EPOCHS else f"epochs {epoch}-{self.cfg.SOLVER.EPOCHS} to go"),
                  flush=True)
        if main:
            if resume:  # accepted: the directory now describes the run as it goes on (e.g. more epochs)
                write_config(self.log_path, self.cfg)
            info = self.runtime()
            provenance.record(self.log_path, info, epoch - 1 if resume else None, at_step)
            worklog.append(self._path("worklog.txt"), provenance.worklog_line(info, epoch - 1 if resume else None, at_step))
            self.wandb = bool(self.cfg.LOG.WANDB) and wandb_log.start_wandb(self.cfg, self.experiment_name)
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.log_path, "train.events"))
        try:
            while epoch <= self.cfg.SOLVER.EPOCHS:
                self.train_epoch(epoch)
                if main:
                    record_cost(epoch)
                epoch += 1
        finally:
            if self.cached is not None and main:
                self.cached.finish()
            if self.writer is not None:
                self.writer.close()
            if self.wandb:
                wandb_log.finish()
            if main and epoch > first:  # the time spent in an interrupted epoch counts too
                record_cost(epoch - 1)
        if main:
            worklog.append(self._path("worklog.txt"), worklog.best_line(self.best_acc))
        barrier()
        return self.best_acc

    def train_epoch(self, epoch: int) -> None:
        lr = self._start_epoch(epoch)
        started = time.time()
        train_loss, train_acc = self._train_loop(epoch)
        if self.dist.enabled:  # one model: what every process evaluates is what rank 0 saves
            average_buffers_(self._batchnorm_buffers())
        values, probed = self._epoch_values(epoch, train_loss, train_acc)
        improved = values["test_acc"] >= self.best_acc
        self.best_acc = max(self.best_acc, values["test_acc"])
        if self.dist.is_main:
            self._record_epoch(epoch, lr, values, probed, improved, time.time() - started)
        barrier()

    def _start_epoch(self, epoch: int) -> float:
        """Every source of randomness reseeded from (EXT.SEED, epoch), and the epoch's learning rate set."""
        seed = epoch_seed(self.cfg, epoch)
        own = rank_seed(seed, self.dist.rank)
        seed_everything(own)  # dropout, and the DataLoader path's augmentation without workers
        if self.contrast is not None:  # a stream of its own: the negatives change no other draw
            self.contrast_generator.manual_seed(rank_seed(seed + 7_919, self.dist.rank))
        if getattr(self.train_loader, "generator", None) is not None:
            self.train_loader.generator.manual_seed(own)  # its order (one process) and its workers' seeds
        if hasattr(self.train_loader, "set_epoch"):
            # the device-resident loader draws the global batch's order and views from (seed, epoch); each rank its share
            self.train_loader.set_epoch(epoch, seed)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler: its seed is EXT.SEED, its epoch this one
        lr = learning_rate(epoch, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def _epoch_values(self, epoch: int, train_loss: float, train_acc: float) -> Tuple[Dict[str, float], Optional[dict]]:
        """The epoch's worklog values: training, every head on the test split (and the held-out split),
        the method's diagnostics, cache hits, skipped steps, the probe's means; and the probe's epoch."""
        test = self.validate(epoch)
        values = OrderedDict(train_acc=train_acc, train_loss=train_loss, test_acc=test["test_acc"],
                             test_acc_top5=test["test_acc_top5"], test_loss=test["test_loss"])
        values.update((k, v) for k, v in test.items() if k not in values)
        if self.holdout_loader is not None:  # the EXT.VAL_SPLIT images: val_acc, val_acc_top5, val_loss, ...
            held = self.validate(epoch, self.holdout_loader, "val")
            values.update(("val" + k[len("test"):], v) for k, v in held.items())
        values.update(hook(self.distiller, "take_diagnostics")())
        if self.cached is not None:
            values.update(self.cached.take_counts())
        if self.guard.skipped:
            values["nonfinite_skipped"] = float(self.guard.skipped)
        probed = self.probe.take_epoch() if self.probe is not None else None
        if probed is not None:
            values["grad_cos"], values["grad_norm_ratio"] = probed["mean_cos"], probed["mean_ratio"]
        return values, probed

    def _record_epoch(self, epoch: int, lr: float, values: Dict[str, float], probed: Optional[dict], improved: bool,
                      seconds: float) -> None:
        # the logs first, then the checkpoint: a crash in between leaves logs of an epoch the checkpoint
        # does not hold, which resume drops (and the epoch runs again); the other order would lose them
        worklog.append(self._path("worklog.txt"), worklog.epoch_block(epoch, lr, values))
        if probed is not None:
            self._log_probe(epoch, probed)
        self._save(epoch, improved)
        for k, v in values.items():
            self.writer.add_scalar(k, v, epoch)
        self.writer.add_scalar("lr", lr, epoch)
        if self.wandb:
            wandb_log.log_epoch(lr, values, self.best_acc)
        self.writer.flush()
        self._epoch_line(epoch, lr, values, seconds)

    def _epoch_line(self, epoch: int, lr: float, values: Dict[str, float], seconds: float) -> None:
        """One line per epoch on stdout, terminal or not (logs of sweeps, nohup, CI)."""
        self._epoch_seconds.append(seconds)
        left = self.cfg.SOLVER.EPOCHS - epoch
        eta = left * sum(self._epoch_seconds) / len(self._epoch_seconds)
        print(f"epoch {epoch}/{self.cfg.SOLVER.EPOCHS} | lr {lr:g} | train loss {values['train_loss']:.4f} "
              f"top-1 {values['train_acc']:.2f} | test top-1 {values['test_acc']:.2f} (best {self.best_acc:.2f}) | "
              + (f"val top-1 {values['val_acc']:.2f} | " if "val_acc" in values else "")
              + f"{_duration(seconds)} | eta {_duration(eta)}", flush=True)

    def _prepare(self, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        image = batch[0].to(self.device, non_blocking=True).float()
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, batch[1].to(self.device, non_blocking=True)

    def _train_loop(self, epoch: int) -> Tuple[float, float]:
        self.distiller.train()
        dev = self.device
        sums = torch.zeros(2, device=dev)  # loss * n, top-1 hits
        seen = 0
        self.guard.reset()
        steps = len(self.train_loader)
        batches = iter(self.train_loader)
        start = 0
        if self._position is not None:  # resumed from this epoch's snapshot
            start, sums, seen = self._continue_epoch(batches)
        # None lets tqdm switch itself off when stderr is not a terminal (logs of sweeps, nohup)
        show = self.cfg.EXT.PROGRESS and self.dist.is_main
        bar = tqdm(total=steps, initial=start, desc=f"epoch {epoch}", disable=None if show else True,
                   dynamic_ncols=True, leave=False)
        refreshed = logged = started = time.monotonic()
        seen_before = seen  # the speed counts only this process's images
        terminal = sys.stderr.isatty()
        for step, batch in enumerate(batches, start):
            image, target = self._prepare(batch)
            # epochs completed after this step: the per-step warm-up of a fractional DKD/AEKT.WARMUP
            extra: Dict[str, object] = {"progress": epoch - 1 + (step + 1) / steps}
            if self.cached is not None:
                extra["teacher_logits"] = self.cached.logits(image, self._origin[batch[2]], batch[3])
            if self.contrast is not None:
                index = batch[2].to(self.device)
                extra["index"] = index
                extra["contrastive_index"] = self.contrast.draw(index, self.contrast_generator)
            probe = functools.partial(self.probe.measure, step) if self.probe is not None and self.probe.due(step) else None
            done = train_step(self.model, self.optimizer, image, target, epoch, self.setup, step, self.guard, probe, extra)
            bar.update()
            if done is not None:
                logits, total = done
                n = target.shape[0]
                seen += n
                sums += torch.stack([total.float() * n, topk_correct(logits.detach(), target, (1,))[0]])
                now = time.monotonic()
                if step % CHECK_EVERY == 0 or step == steps - 1 or now - refreshed > REFRESH_SECONDS:
                    refreshed = now
                    self._check_finite(epoch)
                    s = sums.tolist()
                    bar.set_postfix(loss=f"{s[0] / max(seen, 1):.4f}", top1=f"{100 * s[1] / max(seen, 1):.2f}")
                    if show and not terminal and now - logged >= LOG_SECONDS:
                        logged = now
                        print(f"epoch {epoch} step {step + 1}/{steps} | loss {s[0] / max(seen, 1):.4f} | "
                              f"{(seen - seen_before) / (now - started):.0f} images/s", flush=True)
            if step < steps - 1 and self.snapshots.due():  # the epoch's end writes `latest` instead
                self._snapshot(epoch, step + 1, sums, seen)
        bar.close()
        self._check_finite(epoch)
        # the sample count joins the device sums only once, for the cross-process reduction
        s = all_reduce_sum(torch.cat([sums, torch.tensor([float(seen)], device=dev)])).tolist()
        return s[0] / max(s[2], 1), 100.0 * s[1] / max(s[2], 1)

    def _generators(self) -> Dict[str, torch.Generator]:
        """The engine's own random generators, beside torch's, numpy's and Python's."""
        return {"contrast": self.contrast_generator} if self.contrast is not None else {}

    def _snapshot(self, epoch: int, steps_done: int, sums: torch.Tensor, seen: int) -> None:
        """The epoch in progress after ``steps_done`` steps: what _continue_epoch needs to go on from there."""
        self._check_finite(epoch)  # a snapshot holds only steps that passed the guard
        state = self._state(epoch)
        state.update(step=steps_done, sums=sums.detach().cpu(), seen=seen,
                     rng=snapshot.capture_rng(self.device, self._generators()),
                     diagnostics=hook(self.distiller, "epoch_state")(),
                     probe=self.probe.epoch_state() if self.probe is not None else {},
                     cache=self.cached.epoch_state() if self.cached is not None else {})
        with interrupts_deferred():
            save_atomic(state, self._path(SNAPSHOT))

    def _continue_epoch(self, batches) -> Tuple[int, torch.Tensor, int]:
        """(first step, loss and hit sums, images seen) of an epoch resumed from its snapshot: the steps it
        holds are passed over (their batches drawn and dropped, so a loader's own draws move on as they did),
        then every random state and the epoch's running values are put back as they were."""
        position, self._position = self._position, None
        start = int(position["step"])
        for _ in range(start):
            next(batches)
        snapshot.restore_rng(position["rng"], self.device, self._generators())
        hook(self.distiller, "load_epoch_state")(position["diagnostics"])
        if self.probe is not None and position["probe"]:
            self.probe.load_epoch_state(position["probe"])
        if self.cached is not None and position["cache"]:
            self.cached.load_epoch_state(position["cache"])
        return start, position["sums"].to(self.device), int(position["seen"])

    def _batchnorm_buffers(self) -> List[torch.Tensor]:
        """The running statistics of the student's (and heads') BatchNorm layers: what each process updates from
        its own shard. Other buffers (CRD's memory bank) are kept equal by their method; the teacher is frozen."""
        teacher = {id(m) for m in self.distiller.teacher.modules()} if hasattr(self.distiller, "teacher") else set()
        return [b for m in self.distiller.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                and id(m) not in teacher for b in m.buffers()]

    def _check_finite(self, epoch: int) -> None:
        failure = self.guard.first_failure()
        if failure is None:
            return
        step, culprits = failure
        last = self._path("latest")
        kept = f"the last good checkpoint is {last} (epoch {epoch - 1})" if os.path.exists(last) else "no checkpoint was written yet"
        raise NonFiniteError(f"non-finite {'/'.join(culprits)} at epoch {epoch}, step {step}; {kept}; "
                             "lower SOLVER.LR or check the data, or set EXT.NONFINITE skip to drop such batches")

    def validate(self, epoch: int = 0, loader=None, name: str = "test") -> Dict[str, float]:
        loader = self.val_loader if loader is None else loader
        show = self.cfg.EXT.PROGRESS and self.dist.is_main
        bar = tqdm(total=len(loader), desc=f"{name} {epoch}", disable=None if show else True,
                   dynamic_ncols=True, leave=False)
        try:
            # in fp32 whatever the training precision: the best epoch is chosen on the numbers tools/eval.py reproduces
            return evaluate(self.distiller, loader, self._prepare, None, progress=bar.update,
                            reduce=all_reduce_sum if self.dist.enabled else None)
        finally:
            bar.close()

    def _log_probe(self, epoch: int, probed: Dict[str, object]) -> None:
        """Each probe measurement: tensorboard (global step) and grad_probe.csv (epoch, step, cos, ratio)."""
        steps_per_epoch = len(self.train_loader)
        path = self._path("grad_probe.csv")
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write("epoch,step,global_step,cos,norm_ratio\n")
            for step, cos, ratio in zip(probed["steps"], probed["cos"], probed["ratio"]):
                global_step = (epoch - 1) * steps_per_epoch + step
                self.writer.add_scalar("grad_probe/cos", cos, global_step)
                self.writer.add_scalar("grad_probe/norm_ratio", ratio, global_step)
                f.write(f"{epoch},{step},{global_step},{cos:.6f},{ratio:.6f}\n")

    # ----- checkpoints -----
    def _path(self, name: str) -> str:
        return os.path.join(self.log_path, name)

    def _student(self) -> nn.Module:
        return self.distiller.student

    def _state(self, epoch: int) -> Dict[str, object]:
        config = self.cfg.dump()
        # the data order needs no position: each epoch's order is a function of (seed, epoch)
        state = {"epoch": epoch, "model": self.distiller.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "best_acc": self.best_acc, "config": config,
                 "config_hash": hashlib.sha256(config.encode()).hexdigest(), "nonfinite_skipped": self.guard.skipped}
        if self.setup.scaler is not None:  # fp16: the loss scale it has found (a fresh scaler starts at 65536)
            state["scaler"] = self.setup.scaler.state_dict()
        return state

    def _save(self, epoch: int, improved: bool) -> None:
        state = self._state(epoch)
        student = {"model": self._student().state_dict()}
        with interrupts_deferred():  # Ctrl-C here lands after the epoch's checkpoints, all whole
            save_atomic(state, self._path("latest"))
            discard(self.log_path, SNAPSHOT)  # after `latest`: a crash between leaves one that resume ignores
            save_atomic(student, self._path("student_latest"))
            if epoch % self.cfg.LOG.SAVE_CHECKPOINT_FREQ == 0:
                save_atomic(state, self._path(f"epoch_{epoch}"))
                save_atomic(student, self._path(f"student_{epoch}"))
            if improved:
                save_atomic(state, self._path("best"))
                save_atomic(student, self._path("student_best"))

    def _resume(self) -> int:
        """Load the last finished epoch's checkpoint, or the snapshot of the epoch after it where there is
        one; returns the last finished epoch."""
        path = self._path("latest")
        self._check_same_teacher()
        state = load_safe(path) if os.path.exists(path) else None
        finished = int(state["epoch"]) if state is not None else 0
        partial = self._read_snapshot(finished + 1)
        if partial is not None:
            state, path, self._position = partial, self._path(SNAPSHOT), partial
        if state is None:
            raise UserError(f"--resume: no checkpoint at {path} (no epoch finished); start again with --overwrite")
        saved = CfgNode.load_cfg(state["config"]) if "config" in state else None
        if saved is not None and not self.force_resume:
            diff = config_differences(saved, self.cfg)
            if diff:
                raise UserError(f"--resume: {path} was written with a different config ({'; '.join(diff[:5])}); "
                                "use the same config or pass --force-resume")
        try:
            self.distiller.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"--resume: {path} does not fit this distiller ({str(e).splitlines()[0][:160]})") from None
        if self.setup.scaler is not None and "scaler" in state:
            self.setup.scaler.load_state_dict(state["scaler"])
        self.best_acc = float(state["best_acc"])
        self.guard.skipped = int(state.get("nonfinite_skipped", 0))
        if self.dist.is_main:  # one process rewrites the logs; the others wait at the barrier in train()
            self._truncate_logs(finished)
        return finished

    def _read_snapshot(self, epoch: int) -> Optional[Dict[str, object]]:
        """The snapshot of ``epoch`` in progress, where there is one this run can go on from: not one of an
        earlier epoch (left by a crash just after that epoch's checkpoint), nor one taken under a config that
        --force-resume accepted (its step would count other batches), nor any under torchrun; one that
        cannot be read is passed over with a note. Without one the epoch runs again from its start, as
        without snapshots."""
        path = self._path(SNAPSHOT)
        if not os.path.exists(path) or self.dist.enabled:  # one process's random states and sums: not for several
            return None
        try:
            state = load_safe(path)
        except UserError as e:
            print(f"note: {e}; resuming from the last finished epoch instead", file=sys.stderr)
            return None
        if int(state["epoch"]) != epoch or config_differences(CfgNode.load_cfg(state["config"]), self.cfg):
            return None
        return state

    def _check_same_teacher(self) -> None:
        """A resumed run learns from the file it started with: the teacher's sha256 against runtime.json's."""
        if self.teacher_info is None or self.force_resume:
            return
        recorded = (provenance.read(self.log_path) or {}).get("teacher_sha256")
        now = self.teacher_info.get("sha256")
        if recorded in (None, "none", "n/a") or now in (None, "n/a") or recorded == now:
            return
        first = ((provenance.read(self.log_path) or {}).get("teacher") or {})
        raise UserError(f"--resume: the teacher {self.teacher_info.get('path')} (sha256 {str(now)[:12]}) is not the one "
                        f"this run started with ({first.get('path', '?')}, sha256 {str(recorded)[:12]}); set "
                        "EXT.TEACHER_CKPT to that file, or pass --force-resume to go on with this teacher")

    def _truncate_logs(self, epoch: int) -> None:
        """Drop what was logged after the checkpoint's epoch (written before a crash): worklog blocks and
        the final line, and the probe's rows."""
        def probe_rows(text: str) -> str:
            lines = text.splitlines(keepends=True)
            return "".join(lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= epoch])

        for name, keep in (("worklog.txt", lambda text: worklog.keep_epochs(text, epoch)), ("grad_probe.csv", probe_rows)):
            path = self._path(name)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                text = f.read()
            kept = keep(text)
            if kept != text:
                write_text(path, kept)

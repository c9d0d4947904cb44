"""One place that turns a config and the machine into every choice a run makes: the route (this
engine or mdistiller's trainers), the device, the precision, the memory format, the data path and
compilation. Resolved once per run (``resolve``); the CLIs, the trainer, the data loaders, the
runtime record, eval and the benchmarks read the result instead of deciding again.

``auto`` means this engine: mdistiller's trainers only where a method runs nowhere else (a registered
method without a class of this project's that needs mdistiller's loaders) or where ``EXT.ENGINE host``
asks for them.
So one config trains in one precision, seeded, whether or not mdistiller is installed. On the host
route, a key set away from its default that mdistiller's trainers cannot honour is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple

from yacs.config import CfgNode

from mdistiller_ext.errors import UserError

if TYPE_CHECKING:
    import torch

# this engine's keys that mdistiller's trainers cannot honour, with the default each must keep there
HOST_CANNOT = {"EXT.AMP": ("auto", "off"), "EXT.COMPILE": (False,), "EXT.FAST_DATA": ("auto", "off"),
               "EXT.CHANNELS_LAST": ("auto", "off"), "EXT.NONFINITE": ("stop",), "EXT.DETERMINISTIC": (False,),
               "EXT.SYNC_BN": (False,), "EXT.GRAD_PROBE_EVERY": (0,), "EXT.VAL_SPLIT": (0,),
               "EXT.TEACHER_CACHE": ("auto", "off"), "EXT.SNAPSHOT_MINUTES": (10.0, 0.0)}


@dataclass(frozen=True)
class Machine:
    """What the run can use: CUDA devices (their compute capabilities) and whether mdistiller imports."""
    cuda_capabilities: Tuple[Tuple[int, int], ...] = ()
    has_mdistiller: bool = False

    @property
    def cuda(self) -> bool:
        return bool(self.cuda_capabilities)

    @classmethod
    def current(cls) -> "Machine":
        import torch

        from mdistiller_ext.host import adapter as host

        caps = tuple(torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())) \
            if torch.cuda.is_available() else ()
        return cls(caps, host.HAS_MDISTILLER)


@dataclass(frozen=True)
class Runtime:
    route: str                     # "ext" (this engine) or "host" (mdistiller's trainers)
    why: str                       # why that route
    device: "torch.device"
    amp: Optional["torch.dtype"]   # autocast dtype of training (evaluation is always fp32)
    channels_last: bool
    fast_data: bool                # the device-resident CIFAR path
    compile: bool
    world_size: int = 1

    @property
    def host(self) -> bool:
        return self.route == "host"

    def precision(self) -> str:
        """The arithmetic of training: fp32, bf16 or fp16 (autocast); on CUDA, fp32 with TF32 where torch
        allows it (cuDNN's convolutions do by default: a 10-bit mantissa on Ampere and newer), since that
        changes a network's outputs far beyond rounding (the teacher-logit cache is keyed on this)."""
        import torch

        from mdistiller_ext.runs.provenance import precision_name

        name = precision_name(self.amp)
        if self.amp is None and self.device.type == "cuda" and (
                torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32):
            name += " (TF32 allowed)"
        return name

    def line(self) -> str:
        """The run's first line: what every ``auto`` became."""
        route = "mdistiller's trainers" if self.host else "this engine"
        return (f"runtime: {route} ({self.why}) | device {self.device} | {self.precision()} | "
                f"{'channels-last' if self.channels_last else 'contiguous'} | "
                f"{'device-resident data' if self.fast_data else 'DataLoader'}"
                + (" | compiled" if self.compile else "")
                + (f" | {self.world_size} processes" if self.world_size > 1 else ""))


def resolve_device(want: str, machine: Machine, local_rank: int = 0, world_size: int = 1) -> "torch.device":
    """EXT.DEVICE (or eval's --device) on this machine: ``auto`` and ``cuda`` take the GPU of this
    process's LOCAL_RANK (GPU 0 where each process sees one GPU); ``cuda:N`` that GPU, one process only."""
    import torch

    if want == "cpu" or (want == "auto" and not machine.cuda):
        return torch.device("cpu")
    if not machine.cuda:
        raise UserError(f"EXT.DEVICE = {want!r} but CUDA is not available; use auto or cpu")
    count = len(machine.cuda_capabilities)
    if want in ("auto", "cuda"):
        if local_rank < count:
            return torch.device("cuda", local_rank)
        if count == 1:  # CUDA_VISIBLE_DEVICES gives each process its own single GPU
            return torch.device("cuda", 0)
        raise UserError(f"process {local_rank} of this node has no GPU: {count} are visible; start at most {count} "
                        "processes per node or make one GPU visible to each")
    index = int(want.split(":", 1)[1])
    if index >= count:
        raise UserError(f"EXT.DEVICE = {want!r} but {count} GPU{'s are' if count != 1 else ' is'} visible; use cuda:0 to "
                        f"cuda:{count - 1} or auto")
    if world_size > 1:
        raise UserError(f"EXT.DEVICE = {want!r} would put every torchrun process on one GPU; use auto (each process "
                        "takes the GPU of its LOCAL_RANK)")
    return torch.device("cuda", index)


def resolve_amp(mode: str, device: "torch.device", machine: Machine) -> Optional["torch.dtype"]:
    """EXT.AMP: ``auto`` is bf16 on GPUs with native bf16 (compute capability 8.0 and newer: A100, H100,
    ...; not the emulated bf16 of V100 or T4) and fp32 elsewhere."""
    import torch

    from mdistiller_ext.config import AMP_MODES

    name = AMP_MODES[mode]
    if name != "auto":
        return None if name is None else getattr(torch, name)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if machine.cuda_capabilities[device.index or 0] >= (8, 0) else None


def _route(cfg: CfgNode, machine: Machine, device: "torch.device", world_size: int) -> Tuple[str, str]:
    from mdistiller_ext import registry
    from mdistiller_ext.config import ENGINES

    wanted = ENGINES[cfg.EXT.ENGINE]
    method = registry.find(cfg.DISTILLER.TYPE)
    only_host = method is not None and method.host_data and method.distiller is None
    if wanted is False:
        return "ext", "EXT.ENGINE ext"
    if wanted is None and not only_host:
        return "ext", "EXT.ENGINE auto: this engine, for every method it trains"
    missing = [what for what, ok in (("mdistiller is not installed", machine.has_mdistiller),
                                     ("no CUDA device", device.type == "cuda")) if not ok]
    asked = "EXT.ENGINE host" if wanted else f"DISTILLER.TYPE {cfg.DISTILLER.TYPE}"
    if missing and only_host:
        raise UserError(f"DISTILLER.TYPE {cfg.DISTILLER.TYPE} runs only through mdistiller's own trainer, which requires "
                        f"mdistiller and a CUDA device: {' and '.join(missing)}")
    if missing:
        raise UserError(f"EXT.ENGINE host needs mdistiller's trainers, which need mdistiller installed and a CUDA device: "
                        f"{' and '.join(missing)}; use EXT.ENGINE ext")
    if world_size > 1:
        raise UserError(f"{asked} cannot run under torchrun (mdistiller uses DataParallel); run one process")
    return "host", asked


def host_refusals(cfg: CfgNode) -> Optional[str]:
    """The first key set away from what mdistiller's trainers can honour, as a one-line message."""
    from mdistiller_ext.config import flat_config

    from mdistiller_ext import registry

    flat = flat_config(cfg)
    ours = {f"{node}.{k}": (v,) for node, keys in registry.host_node_keys().items() for k, v in keys.items()}
    for key, allowed in {**HOST_CANNOT, **ours}.items():
        if flat[key] not in allowed:
            return (f"config {key} = {flat[key]!r} cannot be honoured by mdistiller's trainers (they use "
                    f"{allowed[-1]!r}); set EXT.ENGINE ext to train with this engine, or leave {key} at {allowed[0]!r}")
    return None


def resolve(cfg: CfgNode, machine: Optional[Machine] = None, local_rank: int = 0, world_size: int = 1) -> Runtime:
    """Every ``auto`` of ``cfg`` on ``machine`` (default: this one), once."""
    from mdistiller_ext.data.loaders import channels_last_for, fast_data_for

    machine = machine or Machine.current()
    device = resolve_device(cfg.EXT.DEVICE, machine, local_rank, world_size)
    route, why = _route(cfg, machine, device, world_size)
    if route == "host":
        refused = host_refusals(cfg)
        if refused:
            raise UserError(refused)
        # mdistiller's trainers: fp32, contiguous, its own DataLoaders, DataParallel over the visible GPUs
        return Runtime("host", why, device, None, False, False, False, 1)
    if cfg.EXT.SYNC_BN and device.type != "cuda":
        raise UserError("config EXT.SYNC_BN needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); set it to False")
    return Runtime("ext", why, device, resolve_amp(cfg.EXT.AMP, device, machine), channels_last_for(cfg, device),
                   fast_data_for(cfg), bool(cfg.EXT.COMPILE), world_size)


def busy_machine_warning(threads: int, cores: Optional[int] = None, load: Optional[float] = None) -> Optional[str]:
    """One line when torch's threads would share the cores with other busy processes: OpenMP threads then
    wait on each other at every operation and a run can be several times slower than on one thread
    (benchmarks/threads.py: 2.6x slower beside two busy processes on 2 cores). None on an idle enough machine."""
    import os

    if threads <= 1:
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not every platform has a load average
            return None
    if load + threads <= cores + 0.5:
        return None
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # the threads already sleep while they wait
        return (f"note: this machine is busy (load {load:.1f} on {cores} cores); torch's {threads} threads sleep while they "
                "wait (OMP_WAIT_POLICY=PASSIVE, which tools/train.py and tools/eval.py set on a busy machine; the same "
                "numbers); EXT.THREADS 1 may still be faster beside other busy processes")
    return (f"warning: this machine is busy (load {load:.1f} on {cores} cores) and torch will use {threads} threads, "
            "which then wait on each other; on a shared machine OMP_WAIT_POLICY=PASSIVE in the environment (the same "
            "numbers) or EXT.THREADS 1 is faster")

"""The base of this project's distillers: the host's ``Distiller`` plus the optional hooks the
engine uses, each declared here with its default.

Distillers that are not ours (mdistiller's KD, CRD, Vanilla, ...) get the same defaults through
``hook(distiller, name)``, so the engine never probes for attributes.
"""
import functools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mdistiller_ext.host import adapter as host

Output = Tuple[torch.Tensor, Dict[str, torch.Tensor]]


def warmup_factor(epoch: int, warmup: float, progress: Optional[float] = None) -> float:
    """The distillation weight's linear warm-up over ``warmup`` epochs (none when warmup <= 0).

    A whole number of epochs is the host's per-epoch rule, min(epoch / warmup, 1) with the 1-based
    epoch, so the shipped recipes (20 of 240) train exactly as mdistiller's DKD. A fractional one
    (a short schedule scaling the recipe, 20/240 of 15 epochs = 1.25) ramps per step:
    min(progress / warmup, 1), ``progress`` being the epochs completed after this step (the engine
    passes it); the per-epoch rule is its value at each epoch's end.
    """
    if warmup <= 0:
        return 1.0
    if progress is None or float(warmup).is_integer():
        return min(float(epoch) / float(warmup), 1.0)
    return min(float(progress) / float(warmup), 1.0)


def fractional_warmup_on_host(key: str, warmup: float) -> None:
    """mdistiller's trainers pass the integer epoch only: a per-step (fractional) warm-up cannot run there."""
    from mdistiller_ext.errors import UserError

    if warmup > 0 and not float(warmup).is_integer():
        raise UserError(f"config {key} = {warmup} (a fractional warm-up, ramped per step) needs this project's engine "
                        "(EXT.ENGINE ext); mdistiller's trainers ramp per epoch: use a whole number of epochs")


def step_warmup(kwargs: Dict, warmup: float) -> float:
    """``warmup_factor`` from forward_train's keyword arguments (epoch, and progress where given)."""
    return warmup_factor(kwargs.get("epoch", 1), warmup, kwargs.get("progress"))


def global_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over every process's elements under torch.distributed (each process holds its share
    of the global batch), so that a batch statistic does not depend on the number of processes; the local
    mean, bit for bit, in a single process. A statistic: no gradient flows through it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return t.mean()
    s = torch.stack([t.detach().sum(), t.new_tensor(float(t.numel()))])
    dist.all_reduce(s)
    return s[0] / s[1]


def teacher_logits(teacher: nn.Module, image: torch.Tensor, kwargs: Optional[Dict] = None) -> torch.Tensor:
    """The teacher's logits for ``image``: those the engine passed as ``teacher_logits`` (the
    teacher-logit cache) where given, else the teacher's forward pass."""
    given = (kwargs or {}).get("teacher_logits")
    if given is not None:
        return given
    # inference_mode skips autograd bookkeeping; the clone makes the result usable in the losses' graph
    with torch.inference_mode():
        logits = teacher(image)[0]
    return logits.clone()


def split_by_names(losses: Dict[str, torch.Tensor], distill_names: Sequence[str] = ("loss_kd",)
                   ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(sum of the task entries, sum of the distillation entries), or None if either side is empty."""
    task = [v.mean() for k, v in losses.items() if k not in distill_names]
    distill = [v.mean() for k, v in losses.items() if k in distill_names]
    return (sum(task), sum(distill)) if task and distill else None


def require_split(split: Optional[Tuple[torch.Tensor, torch.Tensor]], losses: Dict[str, torch.Tensor]
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    if split is None:
        raise ValueError(f"splitting the gradient needs a task loss and a distillation loss (by default loss_ce and "
                         f"loss_kd; a distiller names its own in DISTILL_LOSSES); got {sorted(losses)}")
    return split


class Distiller(host.Distiller):
    """``cls(student, teacher, cfg)``; ``forward_train`` returns ``(logits, {name: loss})`` (trainers sum
    the dict), ``forward_test`` the deployed logits."""

    # the entries of forward_train's dict that form the distillation side (gradient alignment and the
    # gradient-conflict probe split the losses by this; every other entry is the task side)
    DISTILL_LOSSES: Tuple[str, ...] = ("loss_kd",)
    # True where forward_train reads the teacher only through teacher_logits(teacher, image, kwargs):
    # then the engine may pass cached logits instead of running the teacher (EXT.TEACHER_CACHE)
    TEACHER_LOGITS_ONLY: bool = False

    def forward_test_heads(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every head's test-time logits, "main" (the deployed one) first; logged as test_acc_<head>."""
        return {"main": self.forward_test(image)}

    def split_losses(self, losses: Dict[str, torch.Tensor]) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """(task loss, distillation loss) by DISTILL_LOSSES, or None where one side is missing (vanilla)."""
        # read from the class with a fallback: hook() also binds this to mdistiller's own distillers
        # (its Vanilla, for one), which are not subclasses and have no DISTILL_LOSSES
        return split_by_names(losses, getattr(type(self), "DISTILL_LOSSES", Distiller.DISTILL_LOSSES))

    def get_extra_parameters(self) -> int:
        """Training-only parameters the method adds beside the student (printed at the start)."""
        return 0

    def param_groups(self) -> List[Dict]:
        """The optimizer's parameter groups; a group's ``lr_mult`` scales the schedule's learning rate."""
        return [{"params": list(self.get_learnable_parameters()), "lr_mult": 1.0}]

    def take_diagnostics(self) -> Dict[str, float]:
        """Per-epoch diagnostics gathered during training (worklog and tensorboard), then reset."""
        return {}

    def epoch_state(self) -> Dict[str, torch.Tensor]:
        """What take_diagnostics has gathered so far this epoch, for an in-epoch snapshot (engine/snapshot.py)."""
        return {}

    def load_epoch_state(self, state: Dict[str, torch.Tensor]) -> None:
        """Put back what epoch_state returned (a run resumed in the middle of an epoch)."""

    def contrast_spec(self) -> Optional[Tuple[int, str]]:
        """(K, mode) where forward_train takes each sample's ``index`` and ``contrastive_index`` (CRD's positive
        and K negatives, data/contrast.py), which the engine then draws; None for every other method."""
        return None


HOOKS = ("forward_test_heads", "split_losses", "get_extra_parameters", "param_groups", "take_diagnostics",
         "epoch_state", "load_epoch_state", "contrast_spec")


def hook(distiller: nn.Module, name: str) -> Callable:
    """The distiller's implementation of a declared hook, or the declared default where its class has
    none (mdistiller's own distillers: its Vanilla, for one, has no get_extra_parameters)."""
    if name not in HOOKS:
        raise AttributeError(f"{name} is not a declared distiller hook ({', '.join(HOOKS)})")
    if hasattr(type(distiller), name):
        return getattr(distiller, name)
    return functools.partial(getattr(Distiller, name), distiller)

"""Checkpoint files: atomic writes and safe (weights-only) reads with one-line errors."""
import os
import pickle
import re
from typing import Any, Dict

import torch
import torch.nn as nn

from mdistiller_ext.atomic import write_atomic
from mdistiller_ext.errors import UserError

# what --resume continues from: the last finished epoch, or the snapshot of the epoch after it (engine/snapshot.py)
LATEST, SNAPSHOT = "latest", "latest_partial"


def resumable(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a checkpoint --resume can continue from."""
    return any(os.path.isfile(os.path.join(run_dir, name)) for name in (LATEST, SNAPSHOT))


def discard(run_dir: str, *names: str) -> None:
    """Remove these files of ``run_dir``, those that exist."""
    for name in names:
        try:
            os.remove(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass


def save_atomic(obj: Any, path: str) -> None:
    """torch.save through the atomic writer: a crash leaves either the old file or the new one."""
    try:
        write_atomic(path, lambda f: torch.save(obj, f))
    except (OSError, RuntimeError) as e:  # a full disk shows as either (torch: "unexpected pos ...")
        kept = f"{path} is unchanged" if os.path.exists(path) else f"{path} was not written"
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0][:120]
        raise UserError(f"cannot write checkpoint {path} ({reason}); is the disk full? {kept}; "
                        "free space, then continue with --resume") from None


def load_safe(path: str) -> Dict[str, Any]:
    """torch.load with weights_only=True; a missing, truncated, corrupted or code-carrying file is a UserError."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad archives and refused pickles
        raise UserError(f"cannot load checkpoint {path}: {_load_failure(e)}; use a checkpoint written by "
                        "tools/train.py or mdistiller") from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict (a state_dict or {{'model': state_dict}})")
    return obj


def _load_failure(e: Exception) -> str:
    """What torch.load refused, in a few words (its own message is a paragraph about PyTorch 2.6)."""
    text = str(e)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return f"it holds {refused.group(1)}, which is code, not weights (refused)"
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand or isinstance(e, pickle.UnpicklingError):
        return "not a torch checkpoint (unreadable pickle data)"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"not a torch checkpoint (unreadable: truncated or corrupted; {first[:100]})"


def state_dict_of(obj: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The host's checkpoints wrap the weights as {"model": state_dict}; plain state_dicts pass through."""
    sd = obj.get("model", obj)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def load_into(model: nn.Module, path: str, what: str) -> None:
    """Load weights into ``model`` strictly, naming the file and the first mismatch on failure."""
    load_state(model, state_dict_of(load_safe(path)), path, what)


class ClassCountMismatch(UserError):
    """A checkpoint whose classifier was trained for another number of classes than the dataset's."""


def load_state(model: nn.Module, sd: Dict[str, torch.Tensor], path: str, what: str) -> None:
    """``model.load_state_dict(sd)`` strictly; a mismatch is one line naming the file and the first difference."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise UserError(f"{path} does not fit the {what}: {len(missing)} missing / {len(unexpected)} unexpected keys ({detail}); wrong architecture?")
    matrices = [k for k, v in own.items() if v.dim() == 2]
    classifier = matrices[-1].rsplit(".", 1)[0] + "." if matrices else None
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            mismatch = f"{path} does not fit the {what}: {k} has shape {tuple(sd[k].shape)}, the model expects {tuple(v.shape)}"
            if classifier and k.startswith(classifier):
                from mdistiller_ext.data.sources import NUM_CLASSES

                named = [d for d, n in NUM_CLASSES.items() if n == sd[k].shape[0]]
                raise ClassCountMismatch(f"{mismatch} (the checkpoint's num_classes differs from the dataset's: {sd[k].shape[0]}"
                                         + (f", as {' or '.join(named)}" if named else "") + f", against {v.shape[0]})")
            raise UserError(mismatch)
    model.load_state_dict(sd)

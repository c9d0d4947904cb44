"""Which runs are the same experiment. The comparison pools runs whose configs differ only in ``EXT.SEED``
and keys that change no number, and whose runtime records agree on every field that can change one;
a resume accepts a checkpoint whose config differs only in such keys (and in those that extend a run)."""
from typing import Dict, List, Optional, Sequence

from yacs.config import CfgNode

from mdistiller_ext.config import flat_config

# config keys that change no number of a run: labels, paths, logging, progress display, the probe
NUMBER_NEUTRAL_KEYS = ("EXPERIMENT.NAME", "EXPERIMENT.TAG", "EXPERIMENT.PROJECT", "LOG.PREFIX", "LOG.WANDB",
                       "LOG.SAVE_CHECKPOINT_FREQ", "LOG.TENSORBOARD_FREQ", "DATASET.NUM_WORKERS", "EXT.PROGRESS",
                       "EXT.DATA_ROOT", "EXT.DATA_CACHE", "EXT.DOWNLOAD", "EXT.CKPT_ROOT", "EXT.TEACHER_CKPT",
                       "EXT.THREADS", "EXT.GRAD_PROBE_EVERY", "EXT.SNAPSHOT_MINUTES", "EXT.EXPORT_TEACHER", "EXT.EXPORT_TEACHER_EPOCH",
                       # cached logits are the live teacher's for the same view in the same precision (teacher_cache.py)
                       "EXT.TEACHER_CACHE", "EXT.TEACHER_CACHE_DIR")
# config keys whose effect the runtime record holds as resolved (EXT.FAST_DATA auto -> the data path used)
RESOLVED_KEYS = ("EXT.ENGINE", "EXT.DEVICE", "EXT.FAST_DATA", "EXT.AMP", "EXT.CHANNELS_LAST", "EXT.COMPILE")
# the fields that can change a number (the comparison keeps runs apart when any of them differs)
POOL_FIELDS = ("route", "device", "amp", "channels_last", "data_path", "zoo", "torch", "torchvision", "mdistiller",
               "world_size", "compile", "teacher_sha256")
# config keys that may change between a run and its resume without changing the epochs already run
# (the runtime record says what a different device or engine resolved to; SOLVER.EPOCHS extends a run)
RESUME_NEUTRAL_KEYS = NUMBER_NEUTRAL_KEYS + ("SOLVER.EPOCHS", "EXT.DEVICE", "EXT.ENGINE")


def config_differences(saved: CfgNode, current: CfgNode, neutral: Sequence[str] = RESUME_NEUTRAL_KEYS) -> List[str]:
    """The keys, beyond the ``neutral`` ones (by default those a resume may change), whose values differ. A
    key the saved config lacks (it was added to the project after that run started) counts at its default,
    which keeps the behaviour of before; the defaults are the host CFG's, which holds every registered
    node (importing the package registers them)."""
    from mdistiller_ext.host import adapter as host

    defaults = flat_config(host.host_cfg())
    a, b = flat_config(saved), flat_config(current)
    a = {**{k: v for k, v in defaults.items() if k in b}, **a}
    keys = sorted((set(a) | set(b)) - set(neutral))
    return [f"{k}: {a.get(k, '<absent>')} -> {b.get(k, '<absent>')}" for k in keys if a.get(k) != b.get(k)]


def summary(key: Dict[str, str]) -> str:
    """A short, readable form of ``pool_key``'s fields for tables."""
    if all(v == "unknown" for v in key.values()):
        return "not recorded"
    parts = [key["route"], f"{key['zoo']} zoo", key["amp"], key["data_path"], key["device"],
             "channels-last" if key["channels_last"] == "True" else "", "compiled" if key["compile"] == "True" else "",
             f"torch {key['torch']}", f"mdistiller {key['mdistiller']}" if key["mdistiller"] != "not installed" else "",
             f"x{key['world_size']} processes" if key["world_size"] not in ("1", "unknown") else "",
             f"teacher {key['teacher_sha256'][:8]}" if key["teacher_sha256"] not in ("none", "None", "unknown") else ""]
    return ", ".join(p for p in parts if p)


def pool_key(data: Optional[Dict[str, object]]) -> Dict[str, str]:
    """The number-changing fields of a run (``mixed`` where a resume changed one; ``unknown`` without a record)."""
    if data is None:
        return {k: "unknown" for k in POOL_FIELDS}
    out = {}
    for k in POOL_FIELDS:
        values = {str(data.get(k))} | {str(r.get(k)) for r in data.get("resumed", [])}
        out[k] = values.pop() if len(values) == 1 else "mixed(" + ",".join(sorted(values)) + ")"
    return out

"""Configuration: this project's EXT node with its defaults, and reading, merging and writing configs.

Each method's node (DHKD, AEKT, ...) lives in its method module; ``registration.base_cfg()`` puts
the host's CFG, the EXT node and every registered method's node together (``add_nodes``).
"""
import ast
import difflib
import os
from typing import Any, Callable, Dict, List

from yacs.config import CfgNode as CN

from mdistiller_ext.errors import UserError


def _ext() -> CN:
    n = CN()
    n.ENGINE = "auto"          # auto | host | ext: who trains (auto: this engine, for every method it runs)
    n.DEVICE = "auto"          # auto | cpu | cuda | cuda:N
    n.SEED = 0
    n.DETERMINISTIC = False
    n.DATA_ROOT = "./data"     # dataset folder (or, for cifar10, a .tar.gz of the JPEG copy)
    n.DATA_CACHE = "./data"    # where archives are unpacked and decoded arrays are cached
    n.DOWNLOAD = True          # let torchvision download CIFAR where the network allows it
    n.TRAIN_SUBSET = 0         # CIFAR: train on a fixed random subset of this many images (0: all)
    n.VAL_SPLIT = 0            # CIFAR: hold out this many training images (stratified, fixed draw) as a validation split
    n.TEACHER_CKPT = ""        # explicit teacher checkpoint; empty: look under CKPT_ROOT
    # least test top-1 (%) a teacher must have before a student learns from it (-1: clearly above chance; 0: any)
    n.TEACHER_MIN_ACC = -1.0
    n.CKPT_ROOT = "./download_ckpts"
    n.EXPORT_TEACHER = False   # vanilla runs: also write the model where distillation looks for teachers
    n.EXPORT_TEACHER_EPOCH = "best"  # best | last: which epoch's weights EXPORT_TEACHER writes
    n.PROGRESS = True          # tqdm bars
    n.NONFINITE = "stop"       # stop | skip: what a non-finite loss does
    # minutes of training between snapshots of the epoch in progress, which --resume continues from (0: off)
    n.SNAPSHOT_MINUTES = 10.0
    # speed: each piece can be turned off on its own
    n.FAST_DATA = "auto"       # auto | on | off: CIFAR held on the device, augmented there in batch (auto: on for CIFAR)
    n.AMP = "auto"             # auto | off | bf16 | fp16 (auto: bf16 on CUDA GPUs that support it, off on CPU)
    n.CHANNELS_LAST = "auto"   # auto | on | off (auto: on; measured faster on CUDA and on this project's CPU)
    n.COMPILE = False          # torch.compile the student (and heads) in place
    n.SYNC_BN = False          # DDP: convert BatchNorm to SyncBatchNorm
    n.THREADS = 0              # CPU threads for torch (0: torch's default, one per core)
    # every N steps, cosine and norm ratio of the task and distillation gradients (0: off)
    n.GRAD_PROBE_EVERY = 0
    # the teacher's logits for every augmented view, kept on disk and filled as views are met
    n.TEACHER_CACHE = "auto"   # auto | on | off (auto: on where it applies: this engine, CIFAR fast path, logit-only method)
    n.TEACHER_CACHE_DIR = ""   # empty: <EXT.DATA_CACHE>/teacher_logits
    return n


EXT_NODE = {"EXT": _ext}

# EXT's string options: name -> what it selects (validation takes the names from these tables)
ENGINES = {"auto": None, "host": True, "ext": False}          # use mdistiller's trainers (None: if usable)
SWITCHES = {"auto": None, "on": True, "off": False}           # EXT.FAST_DATA, EXT.CHANNELS_LAST
AMP_MODES = {"auto": "auto", "off": None, "bf16": "bfloat16", "fp16": "float16"}  # torch dtype names
NONFINITE_MODES = {"stop": False, "skip": True}               # drop each bad step (else stop at the first)
EXPORT_EPOCHS = {"best": "student_best", "last": "student_latest"}  # the run's file EXT.EXPORT_TEACHER copies
# keys whose default is a whole number but which take any number (a warm-up of 1.25 epochs ramps per step)
FRACTIONAL_KEYS = ("DKD.WARMUP", "AEKT.WARMUP")


def add_nodes(cfg: CN, nodes: Dict[str, Callable[[], CN]]) -> CN:
    """Add each missing node (idempotent: registration calls it on mdistiller's global CFG)."""
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    for name, make in nodes.items():
        if name not in cfg:
            cfg[name] = make()
    if was_frozen:
        cfg.freeze()
    return cfg


def add_keys(cfg: CN, keys: Dict[str, Dict[str, object]]) -> CN:
    """Add each missing key to an existing node (idempotent): this project's options in a node the host owns."""
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    for node, defaults in keys.items():
        if node in cfg:
            for key, value in defaults.items():
                if key not in cfg[node]:
                    cfg[node][key] = value
    if was_frozen:
        cfg.freeze()
    return cfg


def flat_config(cfg: CN, prefix: str = "") -> Dict[str, object]:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, CN):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, (list, tuple)):
        return "a list, e.g. [150, 180, 210]"
    return "a string"


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    """``value`` in the type of ``default`` (an integer where a number is expected becomes a float);
    anything else of the wrong type is a one-line error naming the key, the value and the type."""
    if default is None or isinstance(value, type(default)) and not (isinstance(value, bool) != isinstance(default, bool)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if key in FRACTIONAL_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    raise UserError(f"{where}{key} = {value!r} has the wrong type: expected {_type_name(default)}")


def _unknown(key: str, known: List[str], where: str) -> UserError:
    # a key of the same node first (DHKD.TEMPERATUR -> DHKD.T, not KD.TEMPERATURE, which DHKD never reads)
    node = key.rsplit(".", 1)[0] + "." if "." in key else ""
    leaves = [k[len(node):] for k in known if node and k.startswith(node)]
    leaf = key[len(node):]
    if leaves:
        strong = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.6)
        if strong:
            return UserError(f"{where}unknown config key {key}; did you mean {node}{strong[0]}?")
        # a spelled-out name of an abbreviated key (TEMPERATUR -> T) before the closest spelling
        prefixes = sorted((k for k in leaves if leaf.startswith(k) or k.startswith(leaf)), key=len, reverse=True)
        best = prefixes or difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.0)
        return UserError(f"{where}unknown config key {key}; did you mean {node}{best[0]}? ({node[:-1]} has "
                         f"{', '.join(sorted(leaves))})")
    top = key.split(".")[0]
    if "." in key and not any(k.startswith(top + ".") for k in known):
        # a whole node nobody registered: most likely a plug-in's method, used without loading it
        return UserError(f"{where}unknown config key {key}: no method or option node {top} is registered; if {top} "
                         "is a plug-in's, pass --plugin FILE_OR_MODULE (or set MDISTILLER_EXT_PLUGINS)")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; see docs/configuration.md"
    return UserError(f"{where}unknown config key {key}{hint}")


def _assign(cfg: CN, flat_items: Dict[str, Any], where: str) -> None:
    known = flat_config(cfg)
    for key, value in flat_items.items():
        if key not in known:
            raise _unknown(key, list(known), where)
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = _coerce(key, value, known[key], where)


def merge_file(cfg: CN, path: str) -> None:
    """Merge a yaml config into ``cfg`` (yaml ``T: 2`` is accepted for a float key)."""
    with open(path) as f:
        merge_text(cfg, f.read(), path)


def merge_text(cfg: CN, text: str, source: str) -> None:
    """Merge a config's yaml text (a file's, or the one a checkpoint carries) into ``cfg``; errors name ``source``."""
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid yaml ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: a config is a mapping of sections (EXPERIMENT:, SOLVER:, ...), not a {type(data).__name__}")
    _assign(cfg, flat_config(CN(data)), f"{source}: ")


def _literal(text: str) -> Any:
    """An override's value as yacs reads it: a Python literal where it is one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_overrides(cfg: CN, opts: List[str]) -> None:
    """Merge ``KEY VALUE`` pairs from the command line into ``cfg``."""
    if len(opts) % 2:
        raise UserError(f"overrides must come in KEY VALUE pairs; got {len(opts)} words: {' '.join(opts)}")
    _assign(cfg, {k: _literal(v) for k, v in zip(opts[::2], opts[1::2])}, "command-line override: ")


def write_config(run_dir: str, cfg: CN) -> None:
    """<run_dir>/config.yaml, replaced atomically."""
    from mdistiller_ext.atomic import write_text

    write_text(os.path.join(run_dir, "config.yaml"), cfg.dump())

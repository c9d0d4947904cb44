"""A run's identity: its config (host CFG + this project's nodes + yaml + overrides) and its directory
name. Shared by the CLIs and the sweep planner (the device is runtime.resolve's)."""
from __future__ import annotations

import hashlib
import os
import re
from typing import List

from yacs.config import CfgNode

from mdistiller_ext.host import registration
from mdistiller_ext.errors import UserError

KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")  # a config key, e.g. SOLVER.EPOCHS


def load_config(path: str, opts: List[str]) -> CfgNode:
    """The host's CFG with this project's nodes, the yaml file, then the command line's overrides."""
    from mdistiller_ext.config import merge_file, merge_overrides

    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    cfg = registration.base_cfg()
    merge_file(cfg, path)
    merge_overrides(cfg, opts)
    cfg.freeze()
    return cfg


MAX_NAME_BYTES = 200


def _flat(value: str) -> str:
    for sep in {os.sep, "/"}:
        value = value.replace(sep, "_")
    return value


def experiment_name(cfg: CfgNode, opts: List[str]) -> str:
    """The host's naming: EXPERIMENT.NAME (or TAG) plus ',KEY:VALUE' for each override, under PROJECT.

    A path separator in a value (LOG.PREFIX /scratch/runs) becomes '_': the host would nest the run
    directory inside folders named after the value's pieces. A name over MAX_NAME_BYTES keeps its
    head and ends in '...#' and a digest of the whole name."""
    name = cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG
    name += "".join(f",{k}:{_flat(str(v))}" for k, v in zip(opts[::2], opts[1::2]))
    if len(name.encode()) > MAX_NAME_BYTES:
        # file systems refuse names over 255 bytes: keep a readable head and a digest of the whole
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[:MAX_NAME_BYTES - 16].decode(errors="ignore") + f"...#{digest}"
    return os.path.join(cfg.EXPERIMENT.PROJECT, name)

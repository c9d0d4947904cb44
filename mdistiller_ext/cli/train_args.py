"""The training command line before anything is built: plug-ins first (they add config keys), ``--resume
[RUN_DIR]``, the flags and the ``KEY VALUE`` overrides, and the overrides that the chosen method never reads."""
import argparse
import os
import sys
from typing import List, Optional, Tuple

from yacs.config import CfgNode

from mdistiller_ext import registry
from mdistiller_ext.host import registration
from mdistiller_ext.runs.naming import KEY

EPILOG = """\
Flags may come anywhere, before or after the overrides. KEY VALUE overrides set any config key
(e.g. SOLVER.EPOCHS 10 EXT.SEED 1) and name the run directory:
LOG.PREFIX/EXPERIMENT.PROJECT/<TAG>,KEY:VALUE,... This project's own keys (defaults):
"""


def _help_epilog() -> str:
    lines = [EPILOG]
    for node, make in registration.all_nodes().items():
        lines.append("  " + "  ".join(f"{node}.{k}={v!r}" for k, v in make().items()))
    return "\n".join(lines)


def _split_resume(argv: List[str]) -> Tuple[List[str], Optional[str]]:
    """Takes ``--resume [RUN_DIR]`` out of argv: the word after it is a run directory unless it is a
    config key (``--resume SOLVER.EPOCHS 300``) or another flag."""
    out, run_dir, resume = [], None, False
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--resume" or word.startswith("--resume="):
            resume = True
            if "=" in word:
                run_dir = word.split("=", 1)[1]
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-") and not KEY.match(argv[i + 1]):
                run_dir = argv[i + 1]
                i += 1
        else:
            out.append(word)
        i += 1
    return out + (["--resume"] if resume else []), run_dir


def take_plugins(argv: List[str]) -> List[str]:
    """Loads the ``--plugin FILE_OR_MODULE`` method modules named in argv (before anything reads the
    registry: a plug-in adds config keys) and returns argv without them."""
    rest, plugins, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--plugin" and i + 1 < len(argv):
            plugins.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--plugin="):
            plugins.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    if plugins:
        registration.add_plugins(plugins)
    return rest


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    argv = take_plugins(list(sys.argv[1:] if argv is None else argv))
    argv, run_dir = _split_resume(argv)
    p = argparse.ArgumentParser(description="Train a student (or a teacher) with mdistiller_ext.",
                                usage="%(prog)s [-h] --cfg CFG [--resume [RUN_DIR]] [--force-resume] [--overwrite] "
                                      "[--check] [--plugin FILE_OR_MODULE] [KEY VALUE ...]",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=_help_epilog() if ("-h" in argv or "--help" in argv) else None)
    p.add_argument("--cfg", help="yaml config, e.g. configs/cifar100/dhkd/res56_res20.yaml (with --resume RUN_DIR: "
                                 "defaults to the run's own config.yaml)")
    p.add_argument("--resume", action="store_true",
                   help="--resume [RUN_DIR]: continue a run from its latest checkpoint; without RUN_DIR the run is "
                        "found from --cfg and the overrides")
    p.add_argument("--force-resume", action="store_true", help="resume even if the config differs from the checkpoint's")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing run directory")
    p.add_argument("--check", action="store_true",
                   help="validate the config and run one forward/backward of the distiller on a fake batch, without "
                        "data, teacher file or output; exit 0, or one line saying what is wrong")
    # take_plugins has consumed these already (a plug-in's keys must exist before parsing); listed for --help
    p.add_argument("--plugin", action="append", metavar="FILE_OR_MODULE",
                   help="load a method module from outside the package (see docs/adding-a-method.md); repeatable")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="overrides, e.g. SOLVER.EPOCHS 10")
    args = p.parse_intermixed_args(argv)
    args.run_dir = run_dir
    if not args.cfg and not run_dir:
        p.error("--cfg is required (or --resume RUN_DIR)")
    return args


def unread_keys(cfg: CfgNode, opts: List[str], config_file: str = "") -> List[str]:
    """Keys of another method's node that this run sets (KD.TEMPERATURE in a DHKD run), by an override or in
    its config file to a value other than the default: accepted, never read."""
    import yaml

    from mdistiller_ext.config import flat_config
    from mdistiller_ext.host import registration

    def elsewhere(key: str) -> bool:
        top = key.split(".")[0]
        return "." in key and top != cfg.DISTILLER.TYPE and registry.find(top) is not None

    keys = [k for k in opts[::2] if elsewhere(k)]
    if config_file and os.path.isfile(config_file):
        with open(config_file) as f:
            written = flat_config(CfgNode(yaml.safe_load(f) or {}))
        defaults = flat_config(registration.base_cfg())
        keys += [k for k, v in written.items() if elsewhere(k) and k not in keys and v != defaults.get(k)]
    return keys


def unread_warning(cfg: CfgNode, key: str) -> str:
    return f"warning: {key} is set, but DISTILLER.TYPE {cfg.DISTILLER.TYPE} does not read the {key.split('.')[0]} node"

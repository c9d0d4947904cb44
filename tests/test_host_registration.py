"""Registration into mdistiller, against a minimal stand-in package with the host's public surface.

The real mdistiller is not on PyPI; this fake has exactly the names the spec lists (distiller_dict,
Distiller, CFG, trainer_dict, model dicts), so the plug-in path is exercised in every CI run.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT

FAKE = {
    "mdistiller/__init__.py": "",
    "mdistiller/distillers/_base.py": """
        import torch.nn as nn
        class Distiller(nn.Module):
            def __init__(self, student, teacher):
                super().__init__()
                self.student, self.teacher = student, teacher
            def get_learnable_parameters(self):
                return [v for _, v in self.student.named_parameters()]
            def get_extra_parameters(self):
                return 0
            def forward_test(self, image):
                return self.student(image)[0]
            def forward(self, **kw):
                return self.forward_train(**kw) if self.training else self.forward_test(kw["image"])
        class Vanilla(nn.Module):
            pass
    """,
    "mdistiller/distillers/__init__.py": """
        from ._base import Distiller, Vanilla
        class KD(Distiller):
            pass
        distiller_dict = {"NONE": Vanilla, "KD": KD}
    """,
    "mdistiller/engine/cfg.py": """
        from yacs.config import CfgNode as CN
        CFG = CN()
        CFG.DISTILLER = CN()
        CFG.DISTILLER.TYPE = "NONE"
        CFG.DKD = CN()
        CFG.DKD.T = 4.0
    """,
    "mdistiller/engine/utils.py": """
        def accuracy(output, target, topk=(1,)):
            return [[0.0] for _ in topk]
    """,
    "mdistiller/engine/__init__.py": """
        class BaseTrainer:
            def __init__(self, experiment_name, distiller, train_loader, val_loader, cfg):
                self.distiller = distiller
        trainer_dict = {"base": BaseTrainer}
    """,
    "mdistiller/models/__init__.py": """
        from mdistiller_ext.host.standalone.models import cifar_model_dict, imagenet_model_dict
    """,
}

PROBE = """
import json, torch
import mdistiller_ext
from mdistiller.distillers import distiller_dict
from mdistiller.distillers._base import Distiller
from mdistiller.engine import trainer_dict, BaseTrainer
from mdistiller.engine.cfg import CFG
mdistiller_ext.register(); mdistiller_ext.register()
CFG.merge_from_list(["DHKD.T", "3.0", "AEKT.BETA", "2.0"])
from mdistiller.models import cifar_model_dict
s, t = cifar_model_dict["resnet8"][0](num_classes=10), cifar_model_dict["resnet8"][0](num_classes=10)
d = distiller_dict["DHKD"](s, t, CFG)
d.train()
_, losses = d(image=torch.randn(2, 3, 32, 32), target=torch.tensor([0, 1]), epoch=1)
print(json.dumps({
    "has_host": mdistiller_ext.HAS_MDISTILLER,
    "keys": sorted(distiller_dict), "trainers": sorted(trainer_dict),
    "align_is_base": issubclass(trainer_dict["align"], BaseTrainer),
    "dhkd_is_host": issubclass(distiller_dict["DHKD"], Distiller),
    "aekt_is_host": issubclass(distiller_dict["AEKT"], Distiller),
    "nodes": [n for n in ("DHKD", "AEKT", "DIST", "TTM", "WTTM", "EXT") if n in CFG],
    "dhkd_t": CFG.DHKD.T, "kd_untouched": distiller_dict["KD"].__module__,
    "losses": sorted(losses),
}))
"""


def test_import_registers_into_host(tmp_path):
    for rel, text in FAKE.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k != "MDISTILLER_EXT_STANDALONE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["has_host"] is True
    # every method of this project's own is registered into the host; CRD, DKD, ReviewKD are the real host's own
    assert out["keys"] == ["AEKT", "DHKD", "DIST", "KD", "NONE", "TTM", "WTTM"]
    assert out["trainers"] == ["align", "base"]
    assert out["align_is_base"] and out["dhkd_is_host"] and out["aekt_is_host"]
    assert out["nodes"] == ["DHKD", "AEKT", "DIST", "TTM", "WTTM", "EXT"]
    assert out["dhkd_t"] == 3.0
    assert out["kd_untouched"] == "mdistiller.distillers"
    assert out["losses"] == ["loss_ce", "loss_kd"]


def test_standalone_without_host():
    from mdistiller_ext.host import adapter as host
    from mdistiller_ext.host import registration

    if host.HAS_MDISTILLER:
        pytest.skip("mdistiller is installed here")
    reg = registration.distiller_registry()
    assert {"KD", "DKD", "DHKD", "AEKT"} <= set(reg)
    assert registration.host_trainers() == {}

"""The method registry: what the built-ins register, duplicate names, plug-in loading, option tables."""
import os
import re
import subprocess
import sys

import pytest

from mdistiller_ext import registry
from mdistiller_ext.host import registration
from mdistiller_ext.errors import UserError
from mdistiller_ext.registry import Method, register_method

from .conftest import ROOT


def test_builtin_methods_with_their_parts():
    builtin = registry.methods(builtin_only=True)
    assert sorted(m.name for m in builtin) == sorted(["NONE", "KD", "DKD", "CRD", "REVIEWKD", "DHKD", "AEKT", "DIST", "TTM",
                                                     "WTTM"])
    by_name = {m.name: m for m in builtin}
    assert by_name["DHKD"].node is not None and by_name["AEKT"].node is not None
    assert by_name["KD"].node is None  # the host's node
    assert by_name["CRD"].distiller is not None and by_name["CRD"].needs_num_data  # this engine's CRD since issue 28
    assert not by_name["NONE"].needs_teacher and by_name["NONE"].recipe is None
    assert len(by_name["DHKD"].ablations) == 12 and len(by_name["AEKT"].ablations) == 10
    assert all(m.builtin for m in builtin)
    assert registry.by_slug("vanilla").name == "NONE"


def test_a_second_method_of_the_same_name_is_refused_and_a_reimport_is_not():
    class Other:
        pass

    with pytest.raises(UserError, match="registered twice"):
        register_method("DHKD")(Other)
    dhkd = registry.get("DHKD")
    assert registry.add(Method("DHKD", dhkd.distiller, slug="dhkd")) is dhkd  # the same class: a no-op


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown DISTILLER.TYPE 'NOPE'; choose one of: .*AEKT"):
        registry.get("NOPE")


def test_every_method_rule_names_a_key_of_the_config():
    cfg = registration.base_cfg()
    from mdistiller_ext.config import flat_config

    keys = set(flat_config(cfg))
    assert {k for k, _ in registry.rules()} <= keys


def test_string_options_validate_from_the_tables_that_build_them():
    from mdistiller_ext.methods import heads
    from mdistiller_ext.methods import losses
    from mdistiller_ext.methods import aekt, dhkd

    rules = dict(registry.rules())
    for key, table in (("DHKD.LOSS", losses.LOGIT_LOSSES), ("DHKD.HEAD", heads.HEAD_TYPES),
                       ("DHKD.HEAD_INIT", heads.HEAD_INITS), ("AEKT.RATIO_MODE", losses.RATIO_MODES),
                       ("AEKT.RATIO_NORM", losses.RATIO_NORMS), ("AEKT.SERIAL", aekt.SERIAL_MODES),
                       ("AEKT.SERIAL_DECAY", aekt.SERIAL_DECAY)):
        check, allowed = rules[key]
        assert all(check(name) for name in table) and not check("not-an-option")
        assert allowed == "one of " + ", ".join(table)
    assert dhkd.RULES and "none" in heads.HEAD_TYPES and heads.HEAD_TYPES["none"] is None


def test_a_plugin_that_fails_to_load_is_one_line(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    env = dict(os.environ, MDISTILLER_EXT_PLUGINS=str(bad))
    r = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--cfg", "configs/cifar10/kd/res20_res8.yaml"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: plug-in {bad} failed to load: RuntimeError: boom"]
    missing = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--plugin", str(tmp_path / "nope.py"),
                              "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1 and "no such file" in missing.stderr


def test_every_method_module_in_the_package_is_registered():
    """The modules of methods/ that register a method are exactly the built-ins' modules (methods/<slug>.py)."""
    folder = ROOT / "mdistiller_ext" / "methods"
    registering = {p.stem for p in folder.glob("*.py") if re.search(r"@register_method|^add\(Method|registry\.add\(", p.read_text(), re.M)}
    assert registering == {m.slug for m in registry.methods(builtin_only=True)}


def test_a_new_file_in_methods_is_discovered_without_editing_anything_else(tmp_path):
    import shutil

    shutil.copytree(ROOT / "mdistiller_ext", tmp_path / "mdistiller_ext", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "mdistiller_ext" / "methods" / "zz_new.py").write_text(
        "from mdistiller_ext.methods.kd import KD\n"
        "from mdistiller_ext.registry import register_method\n\n\n"
        "@register_method('ZZNEW', summary='a copy of KD under a new name')\n"
        "class ZZNew(KD):\n    pass\n")
    code = ("from mdistiller_ext import registry; m = registry.get('ZZNEW'); "
            "print(m.builtin, m.distiller.__module__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.split() == ["True", "mdistiller_ext.methods.zz_new"]


CANDIDATES = (-1, -1.0, 0, 0.0, 1.5, 10 ** 9, "not-an-option", True)


@pytest.mark.parametrize("key", sorted({k for k, _ in registry.rules()}))
def test_each_method_rule_refuses_a_bad_value_its_own_check_picks(key):
    """The bad values come from the method's own rules: the first candidate its check rejects, of the
    key's type where there is one, is refused by validation in one line naming the key and what is allowed."""
    from mdistiller_ext.config import flat_config
    from mdistiller_ext.validate import validate_values

    check, allowed = dict(registry.rules())[key]
    cfg = registration.base_cfg()
    default = flat_config(cfg)[key]
    assert check(default), f"{key}'s default {default!r} breaks its own rule"
    same_type = [c for c in CANDIDATES if type(c) is type(default)] or list(CANDIDATES)
    bad = next(c for c in same_type + list(CANDIDATES) if not check(c))
    node, leaf = key.rsplit(".", 1)
    target = cfg
    for part in node.split("."):
        target = target[part]
    target[leaf] = bad
    with pytest.raises(UserError) as e:
        validate_values(cfg)
    assert str(e.value) == f"config {key} = {bad!r} is invalid: expected {allowed}"


@pytest.mark.parametrize("method", [m for m in registry.methods(builtin_only=True) if m.node is not None or m.recipe is not None],
                         ids=lambda m: m.name)
def test_a_builtin_method_is_its_own_file(method):
    """As the one-file test shows for a plug-in: a built-in's node, recipe, checks and (where this project
    implements it) Distiller are defined in its own module, methods/<slug>.py, and every rule on its node
    names a key of that node."""
    module = f"mdistiller_ext.methods.{method.slug}"
    parts = [method.node, method.recipe, method.check_config, method.check_models]
    if method.distiller is not None and not method.host_provides:
        parts.append(method.distiller)
    for part in filter(None, parts):
        assert part.__module__ == module, (method.name, part, part.__module__)
    if method.node is not None:
        own = [key.split(".", 1)[1] for key, _ in method.rules if key.startswith(method.name + ".")]
        assert own and all(leaf.split(".")[0] in method.node() for leaf in own), (method.name, own)

"""The README's option tables and its table of registered methods agree with the code."""
import re

from mdistiller_ext import config, registry
from mdistiller_ext.config import flat_config

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
ROW = re.compile(r"^\| `([A-Z_]+\.[A-Z_.]+)` \| ([^|]*) \|", re.M)


def documented_defaults() -> dict:
    return {key: text.strip() for key, text in ROW.findall(README)}


def same(text: str, value) -> bool:
    text = text.strip("`")
    if isinstance(value, bool):
        return text == str(value)
    if isinstance(value, (int, float)):
        try:
            return float(text) == value
        except ValueError:
            return False
    return text == value or (value == "" and text == "''")


def test_every_key_of_every_builtin_node_and_ext_is_documented_with_its_default():
    documented = documented_defaults()
    nodes = {**{m.name: m.node for m in registry.methods(builtin_only=True) if m.node is not None}, **config.EXT_NODE}
    checked = 0
    for name, make in nodes.items():
        for key, value in flat_config(make()).items():
            full = f"{name}.{key}"
            assert full in documented, f"{full} is missing from the README's option tables"
            assert same(documented[full], value), f"README says {full} = {documented[full]}, the code {value!r}"
            checked += 1
    assert checked >= 40


def test_the_registered_methods_table_lists_every_builtin_method():
    rows = re.findall(r"^\| `([A-Z]+)` \| `([a-z]+)` \| `(methods/[a-z_]+\.py)` \| ([^|]+) \|$", README, re.M)
    table = {name: (slug, module, summary.strip()) for name, slug, module, summary in rows}
    expected = {m.name: (m.slug, f"methods/{m.slug}.py", m.summary) for m in registry.methods(builtin_only=True)}
    assert table == expected
    for _, module, _ in table.values():
        assert (ROOT / "mdistiller_ext" / module).is_file()

"""The documentation agrees with the code: the option tables (docs/), the README's table of registered
methods, the README's length, and every relative link in the README and docs/ resolves."""
import re
from pathlib import Path
from urllib.parse import unquote

from mdistiller_ext import config, registry
from mdistiller_ext.config import flat_config

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
OPTION_PAGES = [ROOT / "docs" / "configuration.md", *sorted((ROOT / "docs" / "methods").glob("*.md"))]
ROW = re.compile(r"^\| `([A-Z_]+\.[A-Z_.]+)` \| ([^|]*) \|", re.M)


def documented_defaults() -> dict:
    found = {}
    for page in OPTION_PAGES:
        for key, text in ROW.findall(page.read_text()):
            assert key not in found, f"{key} is documented twice ({page.name})"
            found[key] = text.strip()
    return found


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
            assert full in documented, f"{full} is missing from the option tables in docs/"
            assert same(documented[full], value), f"docs say {full} = {documented[full]}, the code {value!r}"
            checked += 1
    assert checked >= 40


def test_the_registered_methods_table_lists_every_builtin_method():
    rows = re.findall(r"^\| `([A-Z]+)` \| `([a-z]+)` \| `(methods/[a-z_]+\.py)` \| ([^|]+) \|$", README, re.M)
    table = {name: (slug, module, summary.strip()) for name, slug, module, summary in rows}
    expected = {m.name: (m.slug, f"methods/{m.slug}.py", m.summary) for m in registry.methods(builtin_only=True)}
    assert table == expected
    for _, module, _ in table.values():
        assert (ROOT / "mdistiller_ext" / module).is_file()


LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str):
    for target in LINK.findall(text):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield unquote(target.split("#")[0])


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken, checked = [], 0
    for page in PAGES:
        for target in relative_links(page.read_text()):
            checked += 1
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
    assert checked >= 20


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[ok](p.md) [web](https://x.org/a) [gone](docs/none.md#part) [anchor](#x)")
    assert [t for t in relative_links(page.read_text()) if not (tmp_path / t).exists()] == ["docs/none.md"]


def test_the_readme_is_an_entry_page_and_links_every_docs_page():
    assert len(README.splitlines()) <= 250
    linked = {(ROOT / t).resolve() for t in relative_links(README)}
    for page in sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "docs" / "methods").glob("*.md")):
        assert page.resolve() in linked, f"{page.relative_to(ROOT)} is not linked from the README"
    # no dated timings or commit hashes in the README's prose (they live in the records that made them)
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", README)
    assert not re.search(r"commit `?[0-9a-f]{7,}", README)

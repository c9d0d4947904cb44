"""The package's import graph has no cycles (every import counts, at module level or inside a function)."""
import ast
from pathlib import Path
from typing import Dict, List, Set

from .conftest import ROOT

PACKAGE = "mdistiller_ext"


def modules() -> Dict[str, Path]:
    out = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> Dict[str, Set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:  # "from . import host" names a module; "from .x import f" a module's member
                    deps.add(f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert "mdistiller_ext.host.adapter" in graph and graph["mdistiller_ext.host.registration"] >= {"mdistiller_ext.host.adapter"}
    assert cycles(graph) == []


def test_the_host_adapter_imports_nothing_but_the_stand_ins():
    assert import_graph()["mdistiller_ext.host.adapter"] <= {"mdistiller_ext.host.standalone._base", "mdistiller_ext.host.standalone.cfg",
                                                     "mdistiller_ext.host.standalone.models"}


def reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def room(graph: Dict[str, Set[str]], name: str) -> Set[str]:
    return {m for m in graph if m == f"{PACKAGE}.{name}" or m.startswith(f"{PACKAGE}.{name}.")}


def test_layers_have_no_back_edges():
    graph = import_graph()
    p = PACKAGE + "."
    engine, clis, reporting = room(graph, "engine"), room(graph, "cli"), room(graph, "reporting")
    # data, methods and the config layer never reach the engine, reporting or a command-line module
    for low in [*room(graph, "data"), p + "config", p + "registry", p + "rules", p + "validate", p + "recipes",
                *room(graph, "methods")]:
        assert not reachable(graph, low) & (engine | clis | reporting), low
    # the engine reaches no command-line module, no report, registration or the method modules (it trains any distiller)
    for m in engine - {p + "engine.host_trainer"}:
        bad = reachable(graph, m) & (clis | reporting | {p + "host.registration", p + "methods.dhkd", p + "methods.aekt"})
        assert not bad, (m, bad)
    # run records and reports never train or start runs (they reach the engine's step only through the
    # registration of the align trainer into mdistiller)
    for m in room(graph, "runs") | reporting:
        assert not reachable(graph, m) & (clis | {p + "engine.trainer", p + "engine.evaluate"}), m
    assert not reachable(graph, p + "cli.sweep") & {p + "cli.train"}
    # the registry and the rules are plain data: no torch, so reading them is cheap
    for light in ("registry", "rules"):
        assert "import torch" not in (ROOT / PACKAGE / f"{light}.py").read_text()


def test_about_a_dozen_modules_at_the_top_level():
    top = [m for m, path in modules().items() if m.count(".") == 1 and path.name != "__init__.py"]
    assert len(top) <= 12, sorted(top)


def test_no_module_uses_another_modules_private_name():
    mods = modules()
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(PACKAGE)):
                # a private function or class (a submodule named _x is a module, not a private name)
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
                           and not any(m.endswith(f".{a.name}") for m in mods)]
                assert not private, f"{name} imports private {private} from {node.module}"

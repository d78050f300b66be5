"""The package's shape (docs/architecture.md): no import cycles between modules, no private name
imported across modules, small modules and functions. `lint-imports` checks the layers."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "simkit"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
# Documented kernels: one Euler loop each, kept whole so that it reads as the equations.
KERNELS = {("kernels/dfc.py", "controller_loop")}


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, names) of every ``import``/``from ... import`` in ``path``, also those
    inside functions."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_no_private_name_is_imported_across_modules():
    bad = [f"{module_name(p)}: from {mod} import {n}" for p in modules()
           for mod, names in imports(p) if mod.startswith("simkit")
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_no_import_cycle_between_modules():
    """Strongly connected components of the module graph (Tarjan) have one module each."""
    names = {module_name(p): p for p in modules()}
    graph = {m: sorted({t for mod, ns in imports(p) for t in targets(mod, ns, names)} - {m})
             for m, p in names.items()}
    cycles = [c for c in components(graph) if len(c) > 1]
    assert not cycles, cycles


def targets(mod, names, known):
    """The simkit modules an import reaches: ``from pkg import module`` reaches the module (and
    not the package's ``__init__``, which Python has loaded before its submodules)."""
    subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in known]
    return subs + ([mod] if mod in known and len(subs) < len(names) or not names else [])


def components(graph):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)
    for v in graph:
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    rel = str(path.relative_to(PACKAGE))
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES and (rel, n.name) not in KERNELS]
    assert not long, f"{rel}: {long}"


def test_the_cycle_finder_finds_a_cycle():
    assert sorted(map(sorted, components({"a": ["b"], "b": ["a"], "c": ["a"]}))) == \
        [["a", "b"], ["c"]]

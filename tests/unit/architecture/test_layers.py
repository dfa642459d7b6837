"""The architecture's executable picture: the import-linter contracts, no import cycle, light hook imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

from _support.paths import REPO

BIN = Path(sys.executable).parent


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan), each a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node) & modules:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_the_layer_contracts_hold() -> None:
    done = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def test_no_import_cycle_among_package_modules_even_inside_functions() -> None:
    graph = grimp.build_graph("resilient_etl", "resilient_etl_devtools", include_external_packages=False)
    modules = {m for m in graph.modules if m.startswith(("resilient_etl.", "resilient_etl_devtools."))}
    assert len(modules) > 80  # the whole package was read
    assert _cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    assert _cycles(graph, {"a", "b", "c"}) == [["a", "b", "c"]]


def test_importing_a_hook_stays_light() -> None:
    """A hook's import pulls in no breaker store client (pybreaker imports Redis), no web framework, no dev tooling."""
    probe = (
        "import sys, resilient_etl.hooks.postcodes, resilient_etl.hooks.companies_house;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pybreaker', 'redis', 'fastapi', 'uvicorn', 'resilient_etl_devtools'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"

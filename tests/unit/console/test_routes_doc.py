"""docs/console.md lists every console route with its access rule; a route without auth cannot slip in."""

from __future__ import annotations

from pathlib import Path

from resilient_etl_console.app import CanAct, CanRead, app, routes_markdown

DOC = Path(__file__).resolve().parents[3] / "docs" / "console.md"


def test_the_route_table_in_the_doc_is_current() -> None:
    assert routes_markdown() in DOC.read_text(), "docs/console.md's route table is stale: paste routes_markdown()"


def test_every_route_but_the_static_files_needs_read_or_edit_access() -> None:
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/static"):
            continue
        deps = getattr(route, "dependencies", [])
        assert CanRead in deps or CanAct in deps, path
        if getattr(route, "methods", set()) & {"POST", "PUT", "PATCH", "DELETE"}:
            assert CanAct in deps, f"{path} changes state with read access only"

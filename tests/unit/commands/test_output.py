"""Listing commands print a table on a terminal and JSON when piped, as a person expects; every format on request."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import yaml

from resilient_etl.cli import build_parser

EXE = str(Path(sys.executable).with_name("resilient-etl"))


def _on_terminal(*args: str) -> str:
    """Run ``resilient-etl ARGS`` with stdout on a pseudo-terminal; return what it showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([EXE, *args], stdout=slave, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "160"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_piped_is_json_and_a_terminal_gets_a_table() -> None:
    piped = subprocess.run([EXE, "db", "history"], capture_output=True, text=True, timeout=60, check=True)
    revisions = json.loads(piped.stdout)
    assert revisions[0]["revision"] and {"revision", "down_revision", "head", "doc"} <= set(revisions[0])
    shown = _on_terminal("db", "history")
    assert "revision" in shown and ("┃" in shown or "│" in shown)  # rich's box drawing, not JSON
    assert not shown.lstrip().startswith("[")
    for fmt, parse in (("json", json.loads), ("yaml", yaml.safe_load)):
        out = subprocess.run([EXE, "db", "history", "-o", fmt], capture_output=True, text=True, timeout=60, check=True).stdout
        assert [r["revision"] for r in parse(out)] == [r["revision"] for r in revisions]
    plain = subprocess.run([EXE, "db", "history", "-o", "plain"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert plain.splitlines()[0].split("\t")[0] == revisions[0]["revision"]


def test_every_listing_command_takes_output_and_documents_its_exit_codes() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("health", "breakers", "incidents", "db", "quarantine", "rejected", "overrides", "drill", "backup"):
        help_text = commands[name].format_help()
        assert "-o {table,json,yaml,plain}" in help_text, name
    for name in ("health", "breakers", "incidents", "db", "deploy"):
        assert "exit codes:" in commands[name].format_help(), name


def test_a_missing_connection_or_an_unreachable_warehouse_is_one_line_not_a_traceback(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    missing = subprocess.run([EXE, "breakers"], capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "resilient-etl breakers: The conn_id `warehouse_default` isn't defined" in missing.stderr
    unreachable = {**env, "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "no" / "such" / "dir.db")})}
    down = subprocess.run([EXE, "breakers"], capture_output=True, text=True, timeout=120, env=unreachable)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert "resilient-etl breakers: WarehouseUnavailableError (database_unavailable): warehouse warehouse_default unreachable" in down.stderr

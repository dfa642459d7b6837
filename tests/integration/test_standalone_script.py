"""`make standalone` (scripts/standalone.sh) as a user runs it: everything on loopback, no log servers, Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from _support.alert_sinks import free_port
from _support.api_server import wait_for_api

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.airflow_run


def _healthy(api_port: int, *components: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=5) as r:
        body = json.loads(r.read())
    return all((body.get(c) or {}).get("status") == "healthy" for c in components)


def test_make_standalone_listens_on_loopback_only_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    project = tmp_path / "project"  # the script works in its checkout: a copy, so data/ and .airflow/ are the test's
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "standalone.sh", project / "scripts")
    for name in ("dags", "plugins", "config"):
        (project / name).symlink_to(REPO / name)
    ports = {name: free_port() for name in ("POSTCODES", "COMPANIES", "SMTP", "SLACK")}
    api_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RESILIENT_ETL"))},
        **{f"RESILIENT_ETL_{name}_PORT": str(port) for name, port in ports.items()},
        "AIRFLOW__API__PORT": str(api_port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "standalone.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", str(project / "scripts" / "standalone.sh")], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_api(f"http://127.0.0.1:{api_port}", proc, log)
        # the scheduler and triggerer heartbeat once they run (that is when they would start log servers)
        deadline = time.monotonic() + 90
        while not _healthy(api_port, "scheduler", "triggerer"):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(1)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        pids = {p.pid for p in family}
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids}
        assert {port for _, port in listening} >= {api_port, *ports.values()}, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening  # no 0.0.0.0 / [::] log servers
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        proc.wait(timeout=60)
        gone = psutil.wait_procs(family, timeout=30)[1]
        assert gone == [], [p.pid for p in gone]
        print(f"\nmake standalone stopped {len(family)} processes in {time.monotonic() - started:.1f} s")
    finally:  # whatever is left of what the script started (by PID), even orphans of a failed stop
        for p in locals().get("family", []):
            if p.is_running():
                p.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

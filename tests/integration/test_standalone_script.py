"""`make standalone` (scripts/standalone.sh) as a user runs it: everything on loopback, no log servers, Ctrl-C stops it all."""

from __future__ import annotations

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
from alert_sinks import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.airflow_run


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
        proc = subprocess.Popen(["bash", str(project / "scripts" / "standalone.sh")], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text(errors="replace")[-4000:]
            time.sleep(1)
        time.sleep(5)  # the scheduler and triggerer are up by now (they would have started their log servers)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        pids = {p.pid for p in family}
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids}
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

"""The command as a shell user meets it: `eval "$(resilient-etl-dev env)"`, and output piped into `head`."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def test_eval_env_puts_both_commands_on_path(tmp_path: Path) -> None:
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # a fresh shell without the venv
    script = (
        f'eval "$({BIN / "resilient-etl-dev"} env --project-dir {REPO})" && command -v resilient-etl resilient-etl-dev airflow'
        ' && echo "$AIRFLOW__API__HOST"'
    )
    done = subprocess.run(["bash", "-c", script], env=bare, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(BIN / "resilient-etl"), str(BIN / "resilient-etl-dev"), str(BIN / "airflow"), "127.0.0.1"]


@pytest.mark.parametrize("command", [["resilient-etl-dev", "classification"], ["resilient-etl", "config", "check"]])
def test_a_closed_pipe_ends_the_command_quietly(command: list[str]) -> None:
    proc = subprocess.Popen(
        [str(BIN / command[0]), *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    proc.stdout.close()  # the reader is gone before the first line is written, as with `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_make_standalone_serves_the_demo_quota() -> None:
    from _support.alert_sinks import free_port
    from resilient_etl_devtools.sandbox import DEMO_CH_LIMIT
    from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY

    script = (REPO / "scripts" / "standalone.sh").read_text()
    sandbox_line = next(line for line in script.splitlines() if line.startswith("resilient-etl-dev sandbox"))
    # as the script starts it, up to its "&"; its port variables are replaced by free ports below
    args = [a for a in sandbox_line.split("&")[0].split()[1:] if not a.startswith('"$')]
    assert "--outbox" in args  # with the local alert sinks
    pc, ch = free_port(), free_port()
    ports = ["--postcodes-port", str(pc), "--companies-port", str(ch), "--smtp-port", str(free_port()), "--slack-port", str(free_port())]
    proc = subprocess.Popen([str(BIN / "resilient-etl-dev"), *args, *ports], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{ch}/company/00000006", headers={"Authorization": "Basic " + base64.b64encode(f"{DEFAULT_API_KEY}:".encode()).decode()}
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    limit = r.headers["X-Ratelimit-Limit"]
                break
            except urllib.error.HTTPError as e:
                limit = e.headers["X-Ratelimit-Limit"]
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.2)
        assert int(limit) == DEMO_CH_LIMIT
    finally:
        proc.terminate()
        proc.wait(timeout=30)

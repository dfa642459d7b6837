"""A real ``airflow api-server`` on a free loopback port, with a REST client holding an admin token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _support.alert_sinks import free_port
from resilient_etl_devtools.localenv import airflow_bin, airflow_env

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ApiServer:
    """A running API server: its URL, the environment it runs with and an admin token."""

    url: str
    env: dict[str, str]
    token: str
    log: Path

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "admin") -> tuple[int, Any]:
        """Send one REST call; return the status and the decoded JSON body (or the raw text)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token if token == 'admin' else token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against the same metadata DB."""
        return subprocess.run([airflow_bin(), *args], env=self.env, capture_output=True, text=True, check=False, timeout=timeout)


def wait_for_api(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """
    Return once the API server at ``url`` answers its health endpoint.

    :param proc: the process serving it (its early exit ends the wait)
    :param log: its output, quoted when it does not come up
    :raises RuntimeError: not up within ``timeout`` seconds, or the process ended
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"API server at {url} did not start:\n" + log.read_text(errors="replace")[-4000:])
        time.sleep(0.5)


def airflow_process_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """Return a clean environment for Airflow processes over this project's DAGs and plugins."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RESILIENT_ETL"))},
        **airflow_env(home, project_dir=REPO),
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def get_token(url: str, username: str, password: str) -> str:
    """Return a JWT for ``username`` from the API server's ``POST /auth/token``."""
    req = urllib.request.Request(
        f"{url}/auth/token", data=json.dumps({"username": username, "password": password}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["access_token"])


@contextmanager
def api_server(
    home: Path, extra_env: dict[str, str], *, reserialize: bool = True, port: int = 0, users: dict[str, tuple[str, str]] | None = None
) -> Iterator[ApiServer]:
    """
    Migrate a metadata DB in ``home``, parse the DAGs into it and serve the API until the block ends.

    :param home: an empty AIRFLOW_HOME
    :param extra_env: connections, config file and other settings for every process
    :param reserialize: parse the DAG folder first (what the dag-processor would do)
    :param port: the port to serve on (default: a free one)
    :param users: the simple auth manager's users as ``{name: (role, password)}`` (default: admin/admin, role admin)
    """
    users = users or {"admin": ("admin", "admin")}
    home.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps({name: password for name, (_, password) in users.items()}))
    port = port or free_port()
    env = airflow_process_env(
        home,
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:{role}" for name, (role, _) in users.items()),
            **extra_env,
        },
    )
    for step in (["db", "migrate"], *([["dags", "reserialize"]] if reserialize else [])):
        done = subprocess.run([airflow_bin(), *step], env=env, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(step)} failed:\n{done.stderr[-4000:]}")
    log = home / "api-server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [airflow_bin(), "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_api(url, proc, log)
        name, (_, password) = next(iter(users.items()))
        yield ApiServer(url=url, env=env, token=get_token(url, name, password), log=log)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

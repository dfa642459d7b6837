"""
One real CeleryExecutor cluster (``resilient-etl cluster up``) shared by the tests in tests/cluster (session fixtures).

It runs on a Redis server of its own (a free port: the suite's other tests flush their Redis databases)
and on PostgreSQL databases of its own, dropped afterwards, with free loopback ports throughout and the
heartbeat timeout lowered so a killed worker is detected in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _support.alert_sinks import free_port
from _support.api_server import ApiServer
from _support.paths import REPO
from conftest import require_service
from resilient_etl_devtools.cluster import Cluster, ClusterSettings

PG = "postgresql://postgres@127.0.0.1:5432"
HEARTBEAT_TIMEOUT = 20
RESET_TIMEOUT = 8


@dataclass
class RunningCluster:
    """The cluster, its REST client and helpers to drive runs."""

    cluster: Cluster
    api: ApiServer
    sandbox_url: str

    @property
    def settings(self) -> ClusterSettings:
        return self.cluster.settings

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``resilient-etl cluster ARGS`` on this cluster's state dir."""
        exe = str(Path(sys.executable).with_name("resilient-etl"))
        return subprocess.run(
            [exe, "cluster", *args, "--state-dir", str(self.settings.state_dir)], capture_output=True, text=True, timeout=timeout, check=False
        )

    def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Companies House sandbox's admin API."""
        req = urllib.request.Request(
            self.sandbox_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run through the REST API; return its run id."""
        status, body = self.api.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        assert status == 200, body
        return str(body["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait until the run finishes; return its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, body = self.api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if body["state"] in ("success", "failed"):
                return str(body["state"])
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} still {body['state']} after {timeout}s: {self.task_instances(dag_id, run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Return the run's task instances by task id."""
        _, body = self.api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """Return a task's ``return_value``."""
        status, body = self.api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        assert status == 200, body
        value = body["value"]
        return json.loads(value) if isinstance(value, str) else value


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{PG}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _free_pair() -> int:
    """Return a free port whose successor is free too (the two workers' log servers)."""
    for _ in range(50):
        port = free_port()
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of the cluster's own on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("redis-server", "not installed (scripts/services.sh installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def running_cluster(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[RunningCluster]:
    """``resilient-etl cluster up`` with two workers, torn down with ``cluster down``."""
    try:
        _pg_admin("SELECT 1")
    except Exception as exc:  # boundary: any connection problem means the service is missing
        require_service("PostgreSQL", str(exc))
    state = tmp_path_factory.mktemp("cluster")
    dags = state / "dags"
    dags.mkdir()
    for dag_file in [*(REPO / "dags").glob("*.py"), REPO / "tests" / "cluster" / "dags" / "cluster_probe.py"]:
        shutil.copy(dag_file, dags / dag_file.name)
    tag = f"retl_c{os.getpid()}"
    settings = ClusterSettings(
        state_dir=state,
        api_port=free_port(),
        postcodes_port=free_port(),
        companies_port=free_port(),
        smtp_port=free_port(),
        slack_port=free_port(),
        log_server_port=_free_pair(),
        metadata_db=f"{tag}_airflow",
        warehouse_db=f"{tag}_warehouse",
        redis_url=redis_server,
        broker_db=0,
        store_db=1,
        dags_folder=dags,
        extra_env={
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "RESILIENT_ETL__DAG__RETRY_DELAY_SECONDS": "1",
            "RESILIENT_ETL__BREAKERS__COMPANIES_HOUSE__RESET_TIMEOUT_SECONDS": str(RESET_TIMEOUT),
            # batches of 200 lines, each planned chunk of 100 taking 0.3 s more (0.6 s a batch, five for the
            # 1,000-row drop): time to kill a worker mid-load with batches committed and batches to go
            "RESILIENT_ETL__LOAD__BATCH_SIZE": "200",
            "RESILIENT_ETL_CHAOS": json.dumps({"load.chunk": {"delay": 0.3}}),
            "RESILIENT_ETL__PATHS__LANDING": str(state / "data" / "landing"),
            "RESILIENT_ETL__PATHS__ARCHIVE": str(state / "data" / "archive"),
            "RESILIENT_ETL__PATHS__REJECTED": str(state / "data" / "rejected"),
        },
    )
    cluster = Cluster(settings, out=lambda line: None)
    exe = str(Path(sys.executable).with_name("resilient-etl"))
    try:
        t0 = time.monotonic()
        healthy = cluster.up(timeout=300)
        up_seconds = time.monotonic() - t0
        assert healthy, "\n".join(f"{r['component']}: {r['state']} {r['health']} {r['detail']}" for r in cluster.status())
        print(f"\ncluster up: all {len(cluster.status())} components healthy in {up_seconds:.1f} s")
        password = json.loads((state / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        req = urllib.request.Request(
            f"{settings.api_url}/auth/token",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            token = json.loads(r.read())["access_token"]
        api = ApiServer(url=settings.api_url, env=dict(os.environ), token=token, log=state / "logs" / "api-server.log")
        running = RunningCluster(cluster, api, f"http://127.0.0.1:{settings.companies_port}")
        _wait_parsed(running, ("company_enrichment", "cluster_probe"))
        yield running
    finally:
        subprocess.run([exe, "cluster", "down", "--state-dir", str(state)], capture_output=True, timeout=120, check=False)
        cluster.down()  # whatever a test restarted by itself
        for db in (settings.metadata_db, settings.warehouse_db):
            _pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _wait_parsed(running: RunningCluster, dag_ids: tuple[str, ...], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {d: running.api.request("GET", f"/api/v2/dags/{d}")[0] for d in dag_ids}
        if all(code == 200 for code in found.values()):
            for d in dag_ids:
                running.api.request("PATCH", f"/api/v2/dags/{d}", {"is_paused": False})
            return
        time.sleep(1)
    raise AssertionError(f"DAGs not parsed in {timeout}s: {found}")

"""The native cluster and docker-compose.yaml describe one deployment; the cluster's process bookkeeping."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from _support.paths import REPO
from resilient_etl_devtools.cluster import SECRET_ENV, Cluster, ClusterSettings, components, deployment_contract

SECRETS = dict.fromkeys(SECRET_ENV, "s3cret")
# What a deployment must agree on; paths, ports and hosts legitimately differ between them.
CONTRACT = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
    *SECRET_ENV,
    "RESILIENT_ETL_CONFIG",
)


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def _scheme(url: str) -> str:
    return url.split("://", 1)[0]


def test_compose_and_cluster_share_the_deployment_contract() -> None:
    compose_env = _compose()["x-airflow-common"]["environment"]
    cluster_env = deployment_contract(ClusterSettings(), SECRETS)
    for key in CONTRACT:
        assert key in compose_env and key in cluster_env, key
    assert compose_env["AIRFLOW__CORE__EXECUTOR"] == cluster_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert compose_env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == cluster_env["AIRFLOW__CORE__HOSTNAME_CALLABLE"]
    assert compose_env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == cluster_env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert _scheme(compose_env[key]) == _scheme(cluster_env[key]), key
    # the same connections, the breaker store in the same Redis database
    assert {k for k in compose_env if k.startswith("AIRFLOW_CONN_")} == {k for k in cluster_env if k.startswith("AIRFLOW_CONN_")}
    assert compose_env["AIRFLOW_CONN_BREAKER_STORE"].rsplit("/", 1)[1] == cluster_env["AIRFLOW_CONN_BREAKER_STORE"].rsplit("/", 1)[1]
    assert compose_env["AIRFLOW__CELERY__BROKER_URL"].rsplit("/", 1)[1] == cluster_env["AIRFLOW__CELERY__BROKER_URL"].rsplit("/", 1)[1]


def test_compose_takes_every_secret_from_the_environment() -> None:
    compose_env = _compose()["x-airflow-common"]["environment"]
    for key in SECRET_ENV:
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", compose_env[key]), key  # required, never a literal
    for key in ("AIRFLOW_CONN_WAREHOUSE_DEFAULT", "AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", "AIRFLOW_CONN_SLACK_ALERTS"):
        assert json.loads(compose_env[key])["password"].startswith("${"), key


def test_both_run_the_same_workers() -> None:
    services = _compose()["services"]
    compose_workers = {name: svc for name, svc in services.items() if svc.get("command", [])[:2] == ["celery", "worker"]}
    cluster_workers = [c for c in components(ClusterSettings()) if c.argv[1:3] == ("celery", "worker")]
    assert len(compose_workers) == len(cluster_workers) == ClusterSettings().workers == 2
    for svc, comp in zip(compose_workers.values(), cluster_workers, strict=True):
        compose_name = svc["command"][svc["command"].index("-H") + 1]
        cluster_name = comp.argv[comp.argv.index("-H") + 1]
        assert compose_name == cluster_name == svc["environment"]["RESILIENT_ETL_WORKER_HOSTNAME"] == comp.env["RESILIENT_ETL_WORKER_HOSTNAME"]
        assert svc["command"][svc["command"].index("-q") + 1] == comp.argv[comp.argv.index("-q") + 1]


def test_every_cluster_component_listens_on_loopback_only() -> None:
    for comp in components(ClusterSettings()):
        if "--host" in comp.argv:
            assert comp.argv[comp.argv.index("--host") + 1] == "127.0.0.1", comp.name
        if comp.name in ("scheduler", "triggerer") or comp.argv[1:3] == ("celery", "worker"):
            assert "--skip-serve-logs" in comp.argv, comp.name  # Airflow's own log servers bind every interface


def test_secrets_are_generated_once_kept_private_and_shared(tmp_path: Path, monkeypatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    cluster = Cluster(ClusterSettings(state_dir=tmp_path))
    first, again = cluster.secret_values(), cluster.secret_values()
    assert first == again and len(set(first.values())) == 2
    assert (tmp_path / "secrets.env").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(SECRET_ENV[0], "from-the-environment")
    assert cluster.environment()[SECRET_ENV[0]] == "from-the-environment"


def test_down_stops_exactly_the_recorded_process_group_and_never_a_reused_pid(tmp_path: Path) -> None:
    cluster = Cluster(ClusterSettings(state_dir=tmp_path), out=lambda _: None)
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        from resilient_etl_devtools.cluster import _start_ticks

        state = {
            "settings": cluster.settings.to_json(),
            "processes": {
                "ours": {"pid": ours.pid, "started": _start_ticks(ours.pid), "log": ""},
                # the PID of a process that is no longer ours: same number, another start time
                "reused": {"pid": stranger.pid, "started": (_start_ticks(stranger.pid) or 0) + 10**6, "log": ""},
            },
        }
        (tmp_path / "cluster.json").write_text(json.dumps(state))
        assert set(cluster.running()) == {"ours"}
        assert cluster.down(grace=5) == ["ours"]
        assert ours.wait(timeout=5) is not None
        assert stranger.poll() is None
        assert cluster.running() == {}
    finally:
        for proc in (ours, stranger):
            if proc.poll() is None:
                os.kill(proc.pid, 9)
                proc.wait()


def test_down_also_stops_descendants_that_left_the_process_group(tmp_path: Path) -> None:
    # Airflow's supervisor starts each task in a session of its own: a worker's node dying takes it too
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        from resilient_etl_devtools.cluster import _start_ticks

        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:  # another process writing it
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        cluster = Cluster(ClusterSettings(state_dir=tmp_path), out=lambda _: None)
        state = {
            "settings": cluster.settings.to_json(),
            "processes": {"worker-1": {"pid": leader.pid, "started": _start_ticks(leader.pid), "log": ""}},
        }
        (tmp_path / "cluster.json").write_text(json.dumps(state))
        killed = cluster.kill("worker-1")
        assert set(killed) == {leader.pid, grandchild}
        leader.wait(timeout=5)
        deadline = time.monotonic() + 5
        while _start_ticks(grandchild) is not None and time.monotonic() < deadline:  # reaped by init once its parent is gone
            time.sleep(0.05)
        assert _start_ticks(grandchild) is None
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()

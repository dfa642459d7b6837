"""
Alerting wired under a real scheduler (``airflow standalone``: scheduler, triggerer, dag-processor,
API server, LocalExecutor), which ``dag.test()`` cannot do for DAGs with Deadline Alerts.

One run of company_enrichment with a revoked Companies House key and deadline tiers of a few
seconds: the triggerer runs the Deadline Alert callbacks from the installed package (warn, then page
on the same incident), the worker runs the failure callback; a real SMTP server and a Slack webhook
endpoint receive them. Prints the latency from the task's failure to each delivery.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _support.alert_sinks import free_port
from _support.paths import CONFIG_FILE as DEFAULT_CONFIG_PATH
from resilient_etl_devtools.localenv import airflow_bin, airflow_env, connection_env
from resilient_etl_devtools.sandbox.data import write_sample_csv
from resilient_etl_devtools.sandbox.faults import FaultSpec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.airflow_run


def _utc(stamp: str) -> float:
    """Unix time of a timestamp read back from SQLite (naive values are UTC)."""
    when = dt.datetime.fromisoformat(stamp)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _wait(what: str, check, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
    pytest.fail(f"{what}: not within {timeout:.0f} s\n--- standalone log tail ---\n{tail}")


def test_deadline_and_failure_alerts_under_a_real_scheduler(api_connections, alert_sinks, tmp_path: Path) -> None:
    smtp, slack = alert_sinks
    home = tmp_path / "airflow"
    dirs = {name: tmp_path / name for name in ("landing", "archive", "rejected")}
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["paths"] = {k: str(v) for k, v in dirs.items()}
    data["deadlines"] = {
        "dag_run_alerts": True,
        # "late" is still pending when the run fails: the plugin's listener must drop it.
        "dag_run": [
            {"name": "warn", "after_minutes": 0.02, "severity": "SEV3"},
            {"name": "page", "after_minutes": 0.1, "severity": "SEV1"},
            {"name": "late", "after_minutes": 30, "severity": "SEV2"},
        ],
        "tasks": {},
    }
    data["apis"]["postcodes_io"]["timeout_seconds"] = 60
    # postcodes.io answers after 10 s, so the run outlives both deadline tiers (a finished run's
    # remaining deadlines are dropped); Companies House refuses the key at once.
    api_connections.postcodes.registry.set("*", FaultSpec(latency_ms=10_000))
    config = tmp_path / "resilience.yaml"
    config.write_text(yaml.safe_dump(data))
    write_sample_csv(dirs["landing"] / "suppliers.csv", rows=40, dirty_share=0)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RESILIENT_ETL"))},
        **airflow_env(home, project_dir=REPO),
        **connection_env(
            postcodes_url=api_connections.postcodes.url,
            companies_url=api_connections.companies.url,
            api_key="revoked-key",
            warehouse={"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")},
        ),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp.connection()),
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack.connection()),
        "RESILIENT_ETL_CONFIG": str(config),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "standalone.log"

    def airflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([airflow_bin(), *args], env=env, capture_output=True, text=True, check=False, timeout=180)

    assert airflow("db", "migrate").returncode == 0
    serialized = airflow("dags", "reserialize")
    assert serialized.returncode == 0, serialized.stderr[-3000:]
    with log.open("w") as out:
        proc = subprocess.Popen([airflow_bin(), "standalone"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import urllib.request

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        _wait("API server up", api_up, 120, log)
        import psutil

        listening = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}, listening  # loopback only, as `make standalone` runs it
        assert "deployment shape looks like production" not in log.read_text(errors="replace")
        assert airflow("dags", "unpause", "company_enrichment").returncode == 0  # the other DAGs stay paused
        trigger = airflow("dags", "trigger", "company_enrichment")
        assert trigger.returncode == 0, trigger.stderr[-3000:]
        _wait("failure e-mail and both deadline alerts", lambda: len(smtp.messages) >= 2 and len(slack.posts) >= 3, 150, log)

        def run_state() -> str | None:
            with sqlite3.connect(home / "airflow.db") as db:
                row = db.execute("SELECT state FROM dag_run WHERE dag_id = 'company_enrichment'").fetchone()
            return row[0] if row else None

        _wait("the run to fail", lambda: run_state() == "failed", 60, log)
        with sqlite3.connect(home / "airflow.db") as db:
            deadlines = db.execute("SELECT missed FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id").fetchall()
        assert sorted(m for (m,) in deadlines) == [1, 1], "the fired tiers stay, the pending one is dropped"
        # the scheduler deletes the row, then logs: its line can reach the file a moment after the row is gone
        _wait("the cleanup's log line", lambda: "pending deadline(s) dropped" in log.read_text(errors="replace"), 30, log)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # SIGTERM would orphan the scheduler's workers
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    texts = slack.texts()
    deadline_posts = [t for t in texts if "missed a deadline" in t]
    assert len(deadline_posts) == 2, texts
    assert deadline_posts[0].startswith(":large_orange_circle: SEV3") and deadline_posts[1].startswith(":rotating_light: SEV1")
    assert "deadline 'warn'" in deadline_posts[0] and "deadline 'page'" in deadline_posts[1]
    subjects = sorted(m.subject for m in smtp.messages)
    assert "[SEV1] company_enrichment missed a deadline: deadline_missed" in subjects  # page tier: e-mail too
    assert "[SEV2] company_enrichment.enrich_companies failed: auth" in subjects

    with sqlite3.connect(home / "airflow.db") as db:
        (end,) = db.execute("SELECT end_date FROM task_instance WHERE task_id = 'enrich_companies' AND state = 'failed'").fetchone()
    failed_at = _utc(end)
    with sqlite3.connect(tmp_path / "warehouse.db") as wh:
        (opened,) = wh.execute("SELECT first_seen_at FROM incidents WHERE task_id = 'enrich_companies'").fetchone()
    opened_at = _utc(opened)
    mail_at = next(m.at for m in smtp.messages if "enrich_companies failed" in m.subject)
    post_at = next(at for at, body, _ in slack.posts if "enrich_companies failed" in body["text"])
    # The failure callback runs in the task's process right after the exception, before Airflow records
    # the end: so the delivery can precede end_date; the incident row is written as the callback starts.
    print(
        f"\nincident opened -> e-mail accepted {mail_at - opened_at:.3f} s, -> Slack post {post_at - opened_at:.3f} s; "
        f"task end_date -> e-mail {mail_at - failed_at:+.3f} s, -> Slack {post_at - failed_at:+.3f} s"
    )
    assert 0 <= mail_at - opened_at < 30 and 0 <= post_at - opened_at < 30

"""
The drills as a user runs them: ``resilient-etl drill run`` against the ``local`` target (real sandbox,
SMTP/Slack sinks, PostgreSQL and Redis behind fault proxies, real ``dag.test`` pipeline runs).

The fast subset runs here on every change and fails when a drill misses a target; the whole catalogue
is ``resilient-etl drill run --all`` (docs/drills.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from conftest import pg_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.airflow_run, pytest.mark.timeout(600)]
EXE = str(Path(sys.executable).with_name("resilient-etl"))


@pytest.fixture
def drill_db(pg_server: sqlalchemy.Engine) -> Iterator[str]:
    """A PostgreSQL database of its own for the drill target's warehouse, dropped afterwards."""
    name = f"retl_drill_{uuid.uuid4().hex[:8]}"
    yield name  # the target creates it
    with pg_server.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def drill(tmp_path: Path, drill_db: str, redis_url: str):
    """Run ``resilient-etl drill ARGS`` on a fresh local target; return the process and its results file."""
    redis_db = int(redis_url.rsplit("/", 1)[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RESILIENT_ETL"))}

    def run(*args: str, extra_env: dict[str, str] | None = None, **popen: object):
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        cmd = [EXE, "drill", "run", *args, "--state-dir", str(tmp_path / "state"), "--database", drill_db, "--redis-db", str(redis_db)]
        cmd += ["--record", str(tmp_path / "results.json"), "--probe-interval", "0.5", "-o", "json"]
        return subprocess.Popen(cmd, env={**env, **(extra_env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)

    run.results = tmp_path / "results.json"  # type: ignore[attr-defined]
    run.state = tmp_path / "state"  # type: ignore[attr-defined]
    return run


FAST = {"postcodes-down", "warehouse-blip", "task-killed", "malformed-file", "dr-restore", "pg-failover"}


def test_the_fast_drills_meet_their_targets(drill, drill_db: str) -> None:
    proc = drill("--fast")
    out, err = proc.communicate(timeout=540)
    results = {r["scenario"]: r for r in json.loads(drill.results.read_text())}
    assert set(results) == FAST, err[-3000:]
    failed = {n: [c for c in r["checks"] if not c["pass"]] or r["error"] for n, r in results.items() if not r["passed"]}
    assert proc.returncode == 0 and not failed, (failed, err[-3000:])
    for name, r in results.items():
        assert r["rows_lost"] == 0 and r["rows_duplicated"] == 0, name
        assert any(c["metric"].startswith("rows_in = ") and c["pass"] for c in r["checks"]), name
        assert r["steady_state_after"] == {"health": "ok", "breakers_closed": "ok"}, name
    # each fault was seen by what a person watches, and hit what it should
    assert results["postcodes-down"]["detected_by"].startswith("health (postcodes_io") and results["postcodes-down"]["dead_requests"] > 0
    assert results["malformed-file"]["detected_by"] in {"file rejected", "alert", "incident"}
    assert [r["state"] for r in results["task-killed"]["runs"]] == ["running", "success"]  # killed mid-load, then cleared
    assert results["task-killed"]["runs"][0]["killed"] and results["task-killed"]["retries_used"] >= 1
    # the disasters: the rows committed after the backup came back from archive/; the standby took over
    restore = results["dr-restore"]["measures"]
    assert restore["rows_committed_after_backup"] > 0 and restore["rows_rederived"] == restore["rows_committed_after_backup"]
    assert restore["rederived_files"] and restore["backup_bytes"] > 0 and restore["restore_seconds"] > 0
    assert results["dr-restore"]["detected_by"].startswith("health (warehouse")
    failover = results["pg-failover"]
    assert failover["measures"]["promote_and_repoint_s"] > 0 and failover["detected_by"].startswith("health (warehouse")
    assert "[6/6] drill pg-failover: PASS" in err and "s to go" in err  # progress on stderr
    assert {r["scenario"] for r in json.loads(out)} == set(results)
    engine = sqlalchemy.create_engine(pg_url(drill_db))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT scenario, passed, rows_lost, rows_duplicated, rto_s FROM drill_results")).all()
    finally:
        engine.dispose()
    assert {(r.scenario, r.passed, r.rows_lost, r.rows_duplicated) for r in rows} == {(n, True, 0, 0) for n in results}
    assert all(r.rto_s == results[r.scenario]["rto_s"] for r in rows)


def test_a_target_not_marked_drillable_or_not_healthy_is_refused(drill) -> None:
    production = drill("postcodes-down", "--target", "production")
    _, err = production.communicate(timeout=60)
    assert production.returncode == 3 and "targets.production.drillable" in err
    # free space the disk cannot have: the folders check fails, so the steady state does not hold
    unhealthy = drill(
        "postcodes-down",
        extra_env={"RESILIENT_ETL__HEALTH__FREE_SPACE_MB__WARN": "90000000", "RESILIENT_ETL__HEALTH__FREE_SPACE_MB__FAIL": "80000000"},
    )
    _, err = unhealthy.communicate(timeout=180)
    assert unhealthy.returncode == 3 and "not in its steady state" in err and "folders" in err, err[-2000:]
    assert not list((drill.state / "landing").glob("drill-*.csv"))  # refused before anything was done


@pytest.mark.skipif(os.geteuid() != 0, reason="an immutable folder needs root (chattr)")
def test_sigterm_mid_fault_removes_the_fault_and_stops_everything(drill) -> None:
    proc = drill("landing-read-only", start_new_session=True)
    landing = drill.state / "landing"
    deadline = time.monotonic() + 120
    while "i" not in _attrs(landing):  # wait until the fault is in force
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "every fault was removed" in err, err[-2000:]
    assert "i" not in _attrs(landing)
    (landing / "written-after.txt").write_text("the folder is writable again")
    assert _processes_with_env(f"AIRFLOW_HOME={drill.state / 'airflow'}") == []  # no pipeline run left behind


def _processes_with_env(entry: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _attrs(path: Path) -> str:
    """The folder's attribute flags ("" before the target made it)."""
    if not path.exists():
        return ""
    return subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]

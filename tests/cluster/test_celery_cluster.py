"""
The pipeline's promises on a real CeleryExecutor deployment with two workers (``resilient-etl cluster``).

One cluster serves the whole module (see ``_support.cluster``); the worker-kill test runs last and
restarts the worker it killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from _support.cluster import PG, RESET_TIMEOUT, RunningCluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.airflow_run, pytest.mark.timeout(900)]


@pytest.fixture
def cluster(running_cluster: RunningCluster) -> RunningCluster:
    """The cluster with healthy sandbox APIs, closed breakers and fresh shared state."""
    running_cluster.sandbox("DELETE", "/__sandbox/faults")
    redis.Redis.from_url(f"{running_cluster.settings.redis_url}/{running_cluster.settings.store_db}").flushdb()
    return running_cluster


def _warehouse(cluster: RunningCluster) -> Any:
    return psycopg2.connect(f"{PG}/{cluster.settings.warehouse_db}")


def _query(cluster: RunningCluster, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = _warehouse(cluster)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _drop(cluster: RunningCluster, name: str, rows: int, seed: int) -> Path:
    landing = cluster.settings.state_dir / "drops" / name
    landing.mkdir(parents=True)
    dev = str(Path(sys.executable).with_name("resilient-etl-dev"))
    subprocess.run([dev, "sample", str(landing / "suppliers.csv"), "--rows", str(rows), "--seed", str(seed)], check=True, capture_output=True)
    return landing


def _committed_chunks(cluster: RunningCluster, run_id: str) -> int:
    return int(_query(cluster, "SELECT count(*) FROM etl_checkpoints WHERE run_id = %s AND task_id = 'load'", run_id)[0][0])


def _company_requests(cluster: RunningCluster) -> int:
    return int(cluster.sandbox("GET", "/__sandbox/faults")["requests"].get("company", 0))


def test_cluster_status_lists_every_component_healthy_and_a_second_up_starts_nothing(cluster: RunningCluster) -> None:
    before = json.loads(cluster.cli("status", "-o", "json").stdout)
    names = [row["component"] for row in before]
    assert names == ["sandbox", "api-server", "scheduler", "dag-processor", "triggerer", "worker-1-logs", "worker-1", "worker-2-logs", "worker-2"]
    assert all(row["health"] == "healthy" and row["state"] == "running" and row["pid"] for row in before), before
    again = cluster.cli("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing started" in again.stdout
    after = json.loads(cluster.cli("status", "-o", "json").stdout)
    assert [r["pid"] for r in after] == [r["pid"] for r in before]


def test_a_run_triggered_through_the_rest_api_spreads_over_both_workers(cluster: RunningCluster) -> None:
    landing = _drop(cluster, "spread", 300, seed=1)
    t0 = time.monotonic()
    run_id = cluster.trigger("company_enrichment", {"landing_dir": str(landing)})
    assert cluster.wait_run("company_enrichment", run_id) == "success"
    print(f"\n300-row company_enrichment run on the cluster: {time.monotonic() - t0:.1f} s")
    tis = cluster.task_instances("company_enrichment", run_id)
    hostnames = {ti["hostname"] for ti in tis.values() if ti["state"] == "success"}
    assert hostnames == {"worker-1", "worker-2"}, {t: ti["hostname"] for t, ti in tis.items()}
    ((rows_in, loaded, quarantined, pending),) = _query(
        cluster, "SELECT rows_in, rows_loaded, rows_quarantined, rows_pending FROM pipeline_runs WHERE run_id = %s", run_id
    )
    assert rows_in == 300 and loaded + quarantined + pending == rows_in and loaded > 270


def test_a_breaker_opened_on_one_worker_stops_the_other_until_the_single_probe(cluster: RunningCluster) -> None:
    cluster.sandbox("PUT", "/__sandbox/faults/company", {"status": 503})
    # 36 calls a quarter second apart on each worker; worker 2 starts once the breaker worker 1 opened reads open
    run_id = cluster.trigger("cluster_probe", {"calls": 36, "pause": 0.25, "worker_2_waits_for_open": 30.0, "max_attempts": 1})
    assert cluster.wait_run("cluster_probe", run_id) == "success"
    results = {task: cluster.xcom("cluster_probe", run_id, task) for task in ("calls_on_worker_1", "calls_on_worker_2")}
    assert {r["hostname"] for r in results.values()} == {"worker-1", "worker-2"}
    sent = {task: [outcome for _, outcome in r["events"] if outcome != "breaker_open"] for task, r in results.items()}
    opener = max(sent, key=lambda task: len(sent[task]))
    other = next(task for task in results if task != opener)
    fail_max = 5
    assert sent[opener][:fail_max] == ["ApiServerError"] * fail_max  # the opener's calls tripped it
    assert results[other]["events"][0][1] == "breaker_open"  # the other worker's first call found it open
    half_opens = _query(
        cluster,
        "SELECT count(*) FROM breaker_events WHERE name = 'companies_house' AND to_state = 'half-open' AND at >= now() - interval '5 minutes'",
    )[0][0]
    # every request after the opening ones was a half-open probe: one per reset timeout, across both workers
    assert 1 <= half_opens <= 2
    assert _company_requests(cluster) == fail_max + half_opens == sum(len(s) for s in sent.values())
    opened_at = results[opener]["events"][fail_max - 1][0]
    before_probe = [
        t for r in results.values() for t, outcome in r["events"] if outcome != "breaker_open" and opened_at < t < opened_at + RESET_TIMEOUT - 0.5
    ]
    assert before_probe == []  # nothing reached the API until the reset timeout passed


def test_pacing_keeps_both_workers_together_under_the_quota(cluster: RunningCluster) -> None:
    cluster.sandbox("PUT", "/__sandbox/quota", {"limit": 20, "window_seconds": 5})
    try:
        t0 = time.monotonic()
        run_id = cluster.trigger("cluster_probe", {"calls": 20, "pace": True, "max_attempts": 3})
        assert cluster.wait_run("cluster_probe", run_id) == "success"
        quota = cluster.sandbox("GET", "/__sandbox/quota")
    finally:
        cluster.sandbox("PUT", "/__sandbox/quota", {"limit": cluster.settings.ch_limit, "window_seconds": 300})
    outcomes = [o for task in ("calls_on_worker_1", "calls_on_worker_2") for _, o in cluster.xcom("cluster_probe", run_id, task)["events"]]
    assert outcomes == ["ok"] * 40
    assert quota["rejected"] == 0, quota  # 40 calls against 20 per 5 s from two workers: no 429
    print(f"\npacing: 40 calls, quota 20/5 s, two workers: 0 x 429 in {time.monotonic() - t0:.1f} s")


def test_the_retry_budget_caps_what_both_workers_send_an_ailing_api(cluster: RunningCluster) -> None:
    cluster.sandbox("PUT", "/__sandbox/faults/company", {"status": 503, "rate": 0.5})
    sent: dict[bool, int] = {}
    for budget in (False, True):
        redis.Redis.from_url(f"{cluster.settings.redis_url}/{cluster.settings.store_db}").flushdb()
        before = _company_requests(cluster)
        run_id = cluster.trigger("cluster_probe", {"calls": 100, "max_attempts": 4, "breaker": False, "budget": budget})
        assert cluster.wait_run("cluster_probe", run_id) == "success"
        sent[budget] = _company_requests(cluster) - before
    calls = 200
    print(f"\n50 % 503, 200 calls over two workers: {sent[False]} requests without the retry budget, {sent[True]} with it")
    assert sent[True] <= (1 + 0.1) * calls
    assert sent[False] > (1 + 0.1) * calls  # the same calls without the budget retry far more


def test_a_worker_killed_mid_load_is_detected_and_the_load_resumes_on_the_other_exactly_once(cluster: RunningCluster) -> None:
    landing = _drop(cluster, "kill", 1000, seed=2)
    run_id = cluster.trigger("company_enrichment", {"landing_dir": str(landing)})
    deadline = time.monotonic() + 300
    while True:
        load = cluster.task_instances("company_enrichment", run_id).get("load", {})
        committed = _committed_chunks(cluster, run_id) if load.get("state") == "running" else 0
        if committed >= 2:
            break
        assert time.monotonic() < deadline, load
        time.sleep(0.2)
    victim = load["hostname"]
    survivor = next(name for name in cluster.settings.worker_names() if name != victim)
    killed_at = time.monotonic()
    killed = cluster.cluster.kill(victim) + cluster.cluster.kill(f"{victim}-logs")  # the worker's node dies
    assert killed
    detected_at = None
    while detected_at is None:
        ti = cluster.task_instances("company_enrichment", run_id)["load"]
        if ti["state"] != "running" or ti["try_number"] > 1:
            detected_at = time.monotonic()
        assert time.monotonic() - killed_at < 120, ti
        time.sleep(0.5)
    assert cluster.wait_run("company_enrichment", run_id) == "success"
    done_at = time.monotonic()
    load = cluster.task_instances("company_enrichment", run_id)["load"]
    assert load["try_number"] == 2 and load["hostname"] == survivor
    print(
        f"\nworker {victim} SIGKILLed mid-load ({committed} chunks committed): detected in {detected_at - killed_at:.1f} s, run complete {done_at - killed_at:.1f} s after the kill"
    )

    chunks = _query(
        cluster, "SELECT chunk_index, hostname, try_number FROM etl_checkpoints WHERE run_id = %s AND task_id = 'load' ORDER BY chunk_index", run_id
    )
    assert [c[0] for c in chunks] == list(range(len(chunks)))  # every chunk committed once, none missing
    # try 2 resumed after the chunks try 1 committed on the dead worker
    on_victim = sum(1 for _, host, _ in chunks if host == victim)
    assert committed <= on_victim < len(chunks)
    assert [(host, try_) for _, host, try_ in chunks] == [(victim, 1)] * on_victim + [(survivor, 2)] * (len(chunks) - on_victim)
    ((rows_in, loaded, quarantined, pending),) = _query(
        cluster, "SELECT rows_in, rows_loaded, rows_quarantined, rows_pending FROM pipeline_runs WHERE run_id = %s", run_id
    )
    in_suppliers = _query(cluster, "SELECT count(*), count(DISTINCT supplier_id) FROM suppliers WHERE run_id = %s", run_id)[0]
    in_quarantine = _query(cluster, "SELECT count(*), count(DISTINCT (source_file, line_number)) FROM quarantine WHERE run_id = %s", run_id)[0]
    assert rows_in == 1000 and loaded + quarantined + pending == rows_in
    assert in_suppliers[0] == in_suppliers[1] == loaded + pending
    assert in_quarantine[0] == in_quarantine[1] == quarantined

    # the worker started again rejoins: `up` starts only what is missing, and a task pinned to it runs there
    restarted = cluster.cli("up")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"started {victim}" in restarted.stdout and "started api-server" not in restarted.stdout
    run_id = cluster.trigger("cluster_probe", {"calls": 1})
    assert cluster.wait_run("cluster_probe", run_id) == "success"
    assert {ti["hostname"] for ti in cluster.task_instances("cluster_probe", run_id).values()} == {"worker-1", "worker-2"}

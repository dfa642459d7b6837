"""Shared circuit breakers under real failures: several OS processes, the sandbox down and up, fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from _support.clock import Clock
from resilient_etl.config import BreakerPolicy, RetryPolicy
from resilient_etl.exceptions import BreakerOpenError, FallbackThresholdError, utc_clock
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.connections import redis_client
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.shared_state import BreakerEventRecorder
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import breaker_events, run_enrichment, suppliers
from resilient_etl.pipeline.backlog import reenrich_backlog
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes, source_counts
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.load.statements import row_statuses
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl.resilience.breaker import SharedCircuitBreaker
from resilient_etl.resilience.stores.redis import RedisStore
from resilient_etl.resilience.stores.sql import SqlStore
from resilient_etl_devtools.sandbox.data import company_register, live_postcodes, write_sample_csv

ONCE = RetryPolicy(dependency="test", max_attempts=1)
NUMBER = next(iter(company_register().profiles))
WORKER = Path(__file__).resolve().parents[1] / "_support" / "breaker_worker.py"


def _fault(app, endpoint: str, **spec) -> None:
    requests.put(f"{app.url}/__sandbox/faults/{endpoint}", json=spec, timeout=5).raise_for_status()


def _calls(app, endpoint: str) -> int:
    return app.registry.snapshot()["requests"].get(endpoint, 0)


@pytest.fixture(params=["sql-postgres", "redis"])
def shared_store(request, api_connections):
    """A breaker store every process can reach: PostgreSQL tables or Redis."""
    if request.param == "redis":
        request.getfixturevalue("breaker_store")
        request.getfixturevalue("sqlite_warehouse")
        WarehouseHook().ensure_schema()
        return "redis", RedisStore(redis_client("breaker_store"))
    request.getfixturevalue("pg_warehouse")
    WarehouseHook().ensure_schema()
    return "sql", SqlStore(WarehouseHook().engine)


def _workers(kind: str, n: int, tmp_path: Path) -> list[str]:
    """Start ``n`` worker processes, wait until all are ready, release them at once; return their outcomes."""
    logs = [tmp_path / f"worker-{i}.log" for i in range(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), kind, NUMBER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=os.environ.copy(),
        )
        for log in logs
    ]
    deadline = time.monotonic() + 60
    for p, log in zip(procs, logs):
        while (line := p.stdout.readline()) and line.strip() != "ready":
            assert time.monotonic() < deadline
        assert line.strip() == "ready", log.read_text()[-2000:]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = []
    for p, log in zip(procs, logs):
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, log.read_text()[-2000:]
        outputs.append(out.strip().splitlines()[-1])
    return sorted(outputs)


def _open_long_ago(store, name: str = "companies_house") -> None:
    assert store.transition(name, expected="closed", new="open", now=time.time() - 100)


def test_half_open_admits_exactly_one_probe_across_processes(shared_store, api_connections, tmp_path) -> None:
    kind, store = shared_store
    _open_long_ago(store)
    _fault(api_connections.companies, "company", latency_ms=800)  # the probe is still in flight when the others try
    before = _calls(api_connections.companies, "company")
    outcomes = _workers(kind, 6, tmp_path)
    assert outcomes == ["ok"] + ["refused"] * 5
    assert _calls(api_connections.companies, "company") - before == 1
    assert store.read("companies_house").state == "closed"


def test_failed_probe_reopens_and_still_only_one_call_reached_the_api(shared_store, api_connections, tmp_path) -> None:
    kind, store = shared_store
    _open_long_ago(store)
    _fault(api_connections.companies, "company", status=503, latency_ms=500)
    before = _calls(api_connections.companies, "company")
    outcomes = _workers(kind, 5, tmp_path)
    assert outcomes == ["failed 503"] + ["refused"] * 4
    assert _calls(api_connections.companies, "company") - before == 1
    snap = store.read("companies_house")
    assert snap.state == "open" and snap.opened_at > time.time() - 30


def test_api_down_then_up(api_connections, sqlite_warehouse) -> None:
    wh = WarehouseHook()
    wh.ensure_schema()
    policy = BreakerPolicy(name="postcodes_io", fail_max=3, reset_timeout_seconds=30)
    clock = Clock(time.time())
    breaker = SharedCircuitBreaker(policy, SqlStore(wh.engine), listeners=[BreakerEventRecorder(wh)], clock=clock)
    hook = PostcodesIoHook(retry_policy=ONCE, breaker=breaker)
    _fault(api_connections.postcodes, "lookup", status=503)
    results = []
    for _ in range(10):
        try:
            hook.lookup("AB10 1AB")
            results.append("ok")
        except Exception as exc:  # recording each outcome
            results.append(type(exc).__name__)
    assert results == ["ApiServerError"] * 3 + ["BreakerOpenError"] * 7
    assert _calls(api_connections.postcodes, "lookup") == 3  # the dead API stopped being called
    requests.delete(f"{api_connections.postcodes.url}/__sandbox/faults", timeout=5)  # the API recovers
    clock.advance(29)
    with pytest.raises(BreakerOpenError):  # not before the reset timeout
        hook.lookup("AB10 1AB")
    clock.advance(1)
    assert hook.lookup("AB10 1AB")["postcode"] == "AB10 1AB"
    assert breaker.current_state == "closed"
    with wh.begin() as conn:
        events = [(e.from_state, e.to_state) for e in conn.execute(select(breaker_events).order_by(breaker_events.c.id))]
    assert events == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def _stage(tmp_path: Path, rows: int = 60) -> tuple[WarehouseHook, str]:
    wh = WarehouseHook()
    wh.ensure_schema()
    write_sample_csv(tmp_path / "landing" / "s.csv", rows=rows, dirty_share=0)
    run_id = f"run-{time.time_ns()}"
    extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id=run_id)
    validate_staged(wh, run_id=run_id)
    return wh, run_id


def _answers(wh: WarehouseHook, run_id: str, kind: str) -> dict[str, str]:
    e = run_enrichment
    with wh.begin() as conn:
        return dict(conn.execute(select(e.c.lookup_key, e.c.source).where(e.c.run_id == run_id, e.c.kind == kind)).all())


def test_postcode_fallback_chain_level_by_level(api_connections, sqlite_warehouse, tmp_path) -> None:
    wh, first = _stage(tmp_path)
    enrich_postcodes(wh, PostcodesIoHook(retry_policy=ONCE), run_id=first)  # fills the cache, live
    cached_keys = set(_answers(wh, first, "postcode"))
    # a second drop with other postcodes, while postcodes.io is down
    write_sample_csv(tmp_path / "landing2" / "s.csv", rows=200, dirty_share=0, seed=7)
    second = "second"
    extract(wh, landing_dir=tmp_path / "landing2", rejected_dir=tmp_path / "rejected", run_id=second)
    validate_staged(wh, run_id=second)
    _fault(api_connections.postcodes, "bulk", status=503)
    wanted = _keys(wh, second)
    reference = {k: live_postcodes()[k.replace(" ", "")] for k in sorted(wanted - cached_keys)[:5]}
    breaker = SharedCircuitBreaker(BreakerPolicy(name="postcodes_io", fail_max=1), SqlStore(wh.engine))
    summary = enrich_postcodes(wh, PostcodesIoHook(retry_policy=ONCE, breaker=breaker), run_id=second, reference=reference)
    got = _answers(wh, second, "postcode")
    assert {k for k, v in got.items() if v == "cached"} == wanted & cached_keys
    assert {k for k, v in got.items() if v == "fallback"} == set(reference)
    assert {k for k, v in got.items() if v == "pending"} == wanted - cached_keys - set(reference)
    assert summary["fallback_reasons"] == {"ApiServerError": 1, "BreakerOpenError": len(range(0, len(wanted), 100)) - 1}
    assert _calls(api_connections.postcodes, "bulk") == 2  # one live run, then one failed call: the breaker did the rest


def _keys(wh: WarehouseHook, run_id: str) -> set[str]:
    from resilient_etl.hooks.warehouse.schema import staged_rows

    with wh.begin() as conn:
        return set(
            conn.execute(select(staged_rows.c.postcode).distinct().where(staged_rows.c.run_id == run_id, staged_rows.c.status == "valid")).scalars()
        )


def test_company_fallback_keeps_the_age_of_cached_answers_and_loads_pending(api_connections, sqlite_warehouse, tmp_path) -> None:
    wh, first = _stage(tmp_path, rows=30)
    enrich_postcodes(wh, PostcodesIoHook(retry_policy=ONCE), run_id=first)
    enrich_companies(wh, CompaniesHouseHook(retry_policy=ONCE), run_id=first)
    load(wh, run_id=first, batch_size=100)
    # second run: the same 30 suppliers plus 30 new ones, Companies House down
    write_sample_csv(tmp_path / "landing2" / "s.csv", rows=60, dirty_share=0)
    second = "second"
    extract(wh, landing_dir=tmp_path / "landing2", rejected_dir=tmp_path / "rejected", run_id=second)
    validate_staged(wh, run_id=second)
    enrich_postcodes(wh, PostcodesIoHook(retry_policy=ONCE), run_id=second)
    _fault(api_connections.companies, "company", status=503)
    breaker = SharedCircuitBreaker(BreakerPolicy(name="companies_house", fail_max=2), SqlStore(wh.engine))
    with pytest.raises(FallbackThresholdError) as info:
        enrich_companies(wh, CompaniesHouseHook(retry_policy=ONCE, breaker=breaker), run_id=second, max_non_live_share=0.9)
    assert info.value.non_live_share == 1.0 and info.value.category.value == "breaker_open"
    # caused by the open breaker: transient, and it says when the breaker probes next
    assert info.value.transient and info.value.breaker == "companies_house"
    assert info.value.retry_at == pytest.approx(time.time() + breaker.policy.reset_timeout_seconds, abs=5)
    assert f"breaker companies_house is open until {utc_clock(info.value.retry_at)}" in str(info.value)
    assert source_counts(wh, run_id=second, kind="company") == {"live": 0, "cached": 30, "fallback": 0, "pending": 30}
    assert _calls(api_connections.companies, "company") == 30 + 2  # first run + two failures before the breaker opened
    result = load(wh, run_id=second, batch_size=100)
    assert result["by_outcome"] == {"loaded": 60}
    with wh.begin() as conn:
        assert row_statuses(conn, run_id=second) == {"loaded": 30, "pending": 30}
        rows = conn.execute(select(suppliers.c.enrichment_status, suppliers.c.enrichment_as_of, suppliers.c.co_status)).all()
    cached = [r for r in rows if r.enrichment_status == "cached"]
    assert len(cached) == 30 and all(r.enrichment_as_of is not None and r.co_status for r in cached)
    assert sum(r.enrichment_status == "pending" and r.co_status is None for r in rows) == 30

    # the API comes back: the next run's backlog step re-enriches the pending suppliers
    requests.delete(f"{api_connections.companies.url}/__sandbox/faults", timeout=5)
    open_breaker = SharedCircuitBreaker(BreakerPolicy(name="companies_house", fail_max=2, reset_timeout_seconds=60), SqlStore(wh.engine))
    waiting = reenrich_backlog(wh, PostcodesIoHook(), CompaniesHouseHook(breaker=open_breaker), run_id="third", limit=100)
    assert waiting["reenriched"] == 0 and "not closed" in waiting["skipped"] and waiting["remaining"] == 30
    later = Clock(time.time() + 61)  # past the reset timeout
    healed = SharedCircuitBreaker(BreakerPolicy(name="companies_house", fail_max=2, reset_timeout_seconds=60), SqlStore(wh.engine), clock=later)
    assert healed.current_state == "open" and not healed.waiting()  # nothing else will call it: the backlog must probe
    done = reenrich_backlog(wh, PostcodesIoHook(), CompaniesHouseHook(breaker=healed), run_id="third", limit=100)
    assert done == {"reenriched": 30, "quarantined": 0, "remaining": 0}
    assert healed.current_state == "closed"  # its first lookup was the probe
    with wh.begin() as conn:
        statuses = conn.execute(select(suppliers.c.enrichment_status)).scalars().all()
    assert sorted(set(statuses)) == ["cached", "live"] and statuses.count("live") == 30
    assert json.dumps(done)


def test_breakers_command_reports_shared_state(sqlite_warehouse, capsys) -> None:
    from resilient_etl.cli import main

    WarehouseHook().ensure_schema()
    assert main(["breakers"]) == 0
    assert [b["state"] for b in json.loads(capsys.readouterr().out)] == ["closed", "closed"]
    SqlStore(WarehouseHook().engine).transition("companies_house", expected="closed", new="open", now=time.time())
    assert main(["breakers"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[1]["name"] == "companies_house" and report[1]["state"] == "open" and report[1]["seconds_to_probe"] > 0


def test_breakers_reset_and_open_are_manual_recorded_changes(sqlite_warehouse, capsys) -> None:
    from resilient_etl.cli import main
    from resilient_etl.config import get_config

    wh = WarehouseHook()
    wh.ensure_schema()
    store = SqlStore(wh.engine)
    assert store.transition("companies_house", expected="closed", new="open", now=time.time())
    assert main(["breakers", "reset", "companies_house", "--reason", "API back", "--by", "alice"]) == 0
    assert "circuit breaker companies_house: open -> closed (manual reset by alice: API back)" in capsys.readouterr().out
    assert store.read("companies_house").state == "closed"
    # healed and reset: the very next call goes to the API, with no wait for a probe
    breaker = SharedCircuitBreaker(get_config().breakers.policy("companies_house"), store)
    assert breaker.call(lambda: "answered") == "answered"

    assert main(["breakers", "open", "companies_house", "--minutes", "5", "--reason", "key rotation", "--by", "bob"]) == 0
    capsys.readouterr()
    assert main(["breakers"]) == 1
    (_, ch) = json.loads(capsys.readouterr().out)
    assert ch["state"] == "open" and 295 <= ch["seconds_to_probe"] <= 300
    with pytest.raises(BreakerOpenError, match=r"circuit breaker companies_house is open until \d\d:\d\d:\d\d UTC"):
        SharedCircuitBreaker(get_config().breakers.policy("companies_house"), store).call(lambda: "not called")
    with wh.begin() as conn:
        events = conn.execute(select(breaker_events.c.from_state, breaker_events.c.to_state, breaker_events.c.reason)).all()
    assert [(e.from_state, e.to_state) for e in events] == [("open", "closed"), ("closed", "open")]
    assert events[0].reason == "manual reset by alice: API back"
    assert events[1].reason.startswith("manual open by bob until ") and events[1].reason.endswith(": key rotation")
    assert main(["breakers", "reset", "nope"]) == 2

    # each is a manual override too (who, why, until when), and the forced open is undone by its id
    capsys.readouterr()
    assert main(["overrides", "list", "-o", "json"]) == 0
    opened, reset = json.loads(capsys.readouterr().out)
    assert (reset["action"], reset["by"], reset["reason"]) == ("breaker-reset", "alice", "API back")
    assert (opened["action"], opened["target"], opened["by"], opened["reason"]) == ("breaker-open", "companies_house", "bob", "key rotation")
    assert opened["until"]
    assert main(["overrides", "undo", str(opened["id"]), "--why", "rotation done", "--by", "bob"]) == 0
    assert store.read("companies_house").state == "closed"
    assert main(["overrides", "undo", str(opened["id"])]) == 2  # once
    assert "was undone already" in capsys.readouterr().err
    assert main(["overrides", "undo", str(reset["id"])]) == 2  # a reset has no reverse: it says what to do instead
    assert "open it again with `resilient-etl breakers open NAME`" in capsys.readouterr().err


def test_a_resumed_try_reports_what_it_really_kept_and_looks_up(api_connections, sqlite_warehouse, tmp_path, logs) -> None:
    from sqlalchemy import update

    wh, run_id = _stage(tmp_path, rows=30)
    first = enrich_companies(wh, CompaniesHouseHook(retry_policy=ONCE), run_id=run_id)
    total = first["looked_up"]
    assert first["already_live"] == 0 and total > 10
    # an earlier try left 10 of its answers from a fallback: only those are looked up again
    with wh.begin() as conn:
        keys = conn.execute(select(run_enrichment.c.lookup_key).where(run_enrichment.c.kind == "company").limit(10)).scalars().all()
        conn.execute(update(run_enrichment).where(run_enrichment.c.lookup_key.in_(keys)).values(source="pending"))
    before = _calls(api_connections.companies, "company")
    second = enrich_companies(wh, CompaniesHouseHook(retry_policy=ONCE), run_id=run_id)
    assert (second["looked_up"], second["already_live"]) == (10, total - 10)
    assert _calls(api_connections.companies, "company") - before == 10
    assert f"company lookups: {total - 10} already answered live by an earlier try, 10 to look up" in logs()


def test_a_breaker_found_open_in_the_store_says_so(sqlite_warehouse, logs) -> None:
    wh = WarehouseHook()
    wh.ensure_schema()
    store = SqlStore(wh.engine)
    store.transition("companies_house", expected="closed", new="open", now=time.time())
    breaker = SharedCircuitBreaker(BreakerPolicy(name="companies_house", reset_timeout_seconds=60), store)
    with pytest.raises(BreakerOpenError):
        breaker.call(lambda: None)
    assert "closed -> open (found open in the shared store, opened at " in logs()
    assert "another worker" not in logs()

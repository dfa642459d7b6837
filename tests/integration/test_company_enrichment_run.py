"""
company_enrichment end to end through real Airflow runs (``dag.test()``) against the sandbox APIs, on a
SQLite and on a PostgreSQL warehouse.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from _support.pipeline import run_dag
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import incidents, pipeline_runs, quarantine, staged_rows, suppliers
from resilient_etl_devtools.sandbox.data import write_sample_csv

pytestmark = pytest.mark.airflow_run
ROWS = 300


def test_end_to_end_run_reconciles_and_enriches(airflow_db, api_connections, warehouse_conn, pipeline_config) -> None:
    drop = write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=ROWS, dirty_share=0.05)
    (pipeline_config["landing"] / "broken.csv").write_bytes(b"\xff\xfe not a csv")
    dag_run = run_dag()
    assert dag_run.state == "success"

    hook = WarehouseHook()
    with hook.begin() as conn:
        run = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == dag_run.run_id)).one()
        q = conn.execute(select(quarantine).where(quarantine.c.run_id == dag_run.run_id)).all()
        loaded = conn.execute(select(suppliers).where(suppliers.c.run_id == dag_run.run_id)).all()
    assert run.status == "success"
    assert run.rows_in == ROWS
    assert run.rows_in == run.rows_loaded + run.rows_quarantined + run.rows_pending
    assert run.rows_loaded == len(loaded) and run.rows_pending == 0
    row_q = [r for r in q if r.stage != "extract"]
    assert len(row_q) == run.rows_quarantined
    # every dirty line of the drop is quarantined, with its own line number and a reason
    assert {r.line_number for r in row_q} == set(drop.dirty_lines) - _accepted_dirty_lines(drop, row_q)
    assert all(r.detail for r in row_q)
    assert {r.error_category for r in row_q} >= {
        "invalid_postcode",
        "invalid_company_number",
        "missing_field",
        "duplicate_supplier_id",
        "unknown_postcode",
        "unknown_company",
    }
    # the unreadable file went to rejected/ and is named in the run summary
    assert (pipeline_config["rejected"] / "broken.csv").exists()
    assert [f["file"] for f in json.loads(run.summary)["rejected_files"]] == ["broken.csv"]
    # valid rows carry their enrichment
    assert all(r.enrichment_status == "live" for r in loaded)
    assert all(r.pc_country and r.pc_admin_district and r.co_name and r.co_type for r in loaded)
    assert sum(r.co_status is not None for r in loaded) == len(loaded)
    # the file was archived under the run
    assert not (pipeline_config["landing"] / "suppliers.csv").exists()
    assert list(pipeline_config["archive"].glob("*/suppliers.csv"))


def _accepted_dirty_lines(drop, quarantined) -> set[int]:
    """Dirty lines whose defect a later rule cannot see (a duplicate of a row that was itself quarantined)."""
    qlines = {r.line_number for r in quarantined}
    return {line for line, reason in drop.dirty_lines.items() if reason == "duplicate supplier id" and line - 1 in qlines}


def test_second_run_loads_no_duplicates(airflow_db, api_connections, sqlite_warehouse, pipeline_config) -> None:
    landing = pipeline_config["landing"]
    write_sample_csv(landing / "suppliers.csv", rows=ROWS)
    first = run_dag()
    write_sample_csv(landing / "suppliers.csv", rows=ROWS)
    second = run_dag()
    assert (first.state, second.state) == ("success", "success")
    with WarehouseHook().begin() as conn:
        total = conn.execute(select(func.count()).select_from(suppliers)).scalar_one()
        runs = conn.execute(select(pipeline_runs.c.rows_loaded)).scalars().all()
        latest = set(conn.execute(select(suppliers.c.run_id)).scalars())
    assert total == runs[0] == runs[1]
    assert latest == {second.run_id}  # upserted by the second run, not inserted again


def test_landing_dir_param_overrides_the_configured_folder(airflow_db, api_connections, sqlite_warehouse, pipeline_config, tmp_path) -> None:
    one_off = tmp_path / "one-off"
    write_sample_csv(one_off / "extra.csv", rows=50, dirty_share=0)
    write_sample_csv(pipeline_config["landing"] / "untouched.csv", rows=50, dirty_share=0)
    dag_run = run_dag(landing_dir=str(one_off))
    assert dag_run.state == "success"
    with WarehouseHook().begin() as conn:
        files = set(conn.execute(select(staged_rows.c.source_file).where(staged_rows.c.run_id == dag_run.run_id)).scalars())
    assert files == {"extra.csv"}
    assert (pipeline_config["landing"] / "untouched.csv").exists() and not (one_off / "extra.csv").exists()


# Per-call retries absorbing a 10 % fault rate; the default retry budget (10 % + 3) would rightly refuse
# some of these retries and load those rows pending (its cap: test_budget.py and tests/cluster).
@pytest.mark.config(retry_budget={"companies_house": {"share": 0.5}, "postcodes_io": {"share": 0.5}})
def test_transient_api_errors_are_retried_and_no_row_is_lost(airflow_db, api_connections, sqlite_warehouse, pipeline_config) -> None:
    import requests

    write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=ROWS, dirty_share=0)
    for app in (api_connections.postcodes, api_connections.companies):
        requests.put(f"{app.url}/__sandbox/faults/*", json={"status": 503, "rate": 0.1}, timeout=5).raise_for_status()
    dag_run = run_dag()
    injected = sum(sum(a.registry.snapshot()["injected"].values()) for a in (api_connections.postcodes, api_connections.companies))
    assert dag_run.state == "success"
    assert injected >= 10  # the faults really happened
    with WarehouseHook().begin() as conn:
        run = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == dag_run.run_id)).one()
    assert (run.rows_in, run.rows_loaded, run.rows_quarantined) == (ROWS, ROWS, 0)


def test_permanent_error_fails_at_once_with_retries_unused(
    airflow_db, api_connections, sqlite_warehouse, pipeline_config, monkeypatch, alert_sinks
) -> None:
    from resilient_etl_devtools.localenv import connection_env

    env = connection_env(postcodes_url="", companies_url=api_connections.companies.url, api_key="revoked-key", warehouse={})
    monkeypatch.setenv("AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", env["AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT"])
    write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=50, dirty_share=0)
    dag_run = run_dag()
    assert dag_run.state == "failed"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    failed = tis["enrich_companies"]
    assert failed.state == "failed"
    assert failed.try_number == 1 and failed.max_tries >= 1  # retries were available and not used
    assert tis["load"].state == "upstream_failed"
    assert (pipeline_config["landing"] / "suppliers.csv").exists()  # nothing archived
    # the failure callback classified it (auth, SEV2: e-mail + Slack to the primary) and opened an incident
    smtp, slack = alert_sinks
    assert [m.subject for m in smtp.messages] == ["[SEV2] company_enrichment.enrich_companies failed: auth"]
    assert len(slack.posts) == 1 and "*auth*" in slack.texts()[0] and f"run `{dag_run.run_id}`" in slack.texts()[0]
    assert "try 1 of" in slack.texts()[0] and "revoked-key" not in smtp.messages[0].body + slack.texts()[0]
    with WarehouseHook().begin() as conn:
        opened = conn.execute(select(incidents)).all()
    assert [(i.task_id, i.category, i.severity, i.status) for i in opened] == [("enrich_companies", "auth", "SEV2", "open")]
    # the upstream tasks succeeded: nothing to recover, nothing sent for them
    assert len(smtp.messages) == 1


@pytest.mark.config(fallback={"max_non_live_share": 1.0}, breakers={"companies_house": {"fail_max": 2}})
def test_api_outage_runs_on_fallbacks_without_burning_retries(airflow_db, api_connections, sqlite_warehouse, pipeline_config) -> None:
    import requests

    landing = pipeline_config["landing"]
    write_sample_csv(landing / "suppliers.csv", rows=40, dirty_share=0)
    assert run_dag().state == "success"  # fills the company cache
    requests.put(f"{api_connections.companies.url}/__sandbox/faults/company", json={"status": 503}, timeout=5).raise_for_status()
    before = api_connections.companies.registry.snapshot()["requests"].get("company", 0)
    write_sample_csv(landing / "suppliers.csv", rows=80, dirty_share=0)  # 40 known companies, 40 new
    dag_run = run_dag()
    assert dag_run.state == "success"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["enrich_companies"].try_number == 1  # the open breaker did not cost an Airflow retry
    calls = api_connections.companies.registry.snapshot()["requests"]["company"] - before
    assert calls <= 2 * 6  # two failed companies (6 attempts each), then the breaker opened
    with WarehouseHook().begin() as conn:
        run = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == dag_run.run_id)).one()
        statuses = dict(
            conn.execute(
                select(suppliers.c.enrichment_status, func.count())
                .where(suppliers.c.run_id == dag_run.run_id)
                .group_by(suppliers.c.enrichment_status)
            ).all()
        )
    assert (run.rows_in, run.rows_loaded, run.rows_pending) == (80, 40, 40)
    assert statuses == {"cached": 40, "pending": 40}
    assert tis["reenrich_backlog"].state == "success"


@pytest.mark.config(breakers={"companies_house": {"reset_timeout_seconds": 4}}, dag={"retries": 1, "retry_delay_seconds": 1})
def test_too_much_fallback_behind_an_open_breaker_retries_after_the_next_probe(
    airflow_db, api_connections, sqlite_warehouse, pipeline_config
) -> None:
    import requests
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    requests.put(f"{api_connections.companies.url}/__sandbox/faults/company", json={"status": 503}, timeout=5).raise_for_status()
    write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=30, dirty_share=0)
    dag_run = run_dag()
    assert dag_run.state == "failed"  # the API never came back
    ti = {ti.task_id: ti for ti in dag_run.get_task_instances()}["enrich_companies"]
    # transient (an open breaker), so retried - but not before the breaker's probe (4 s, not the 1 s retry delay)
    assert ti.state == "failed" and ti.try_number == 2
    with create_session() as session:
        first = session.query(TaskInstanceHistory).filter_by(run_id=dag_run.run_id, task_id="enrich_companies", try_number=1).one()
    assert (ti.start_date - first.end_date).total_seconds() >= 3.0


def test_clear_and_rerun_resumes_after_the_last_committed_chunk(airflow_db, api_connections, sqlite_warehouse, pipeline_config, monkeypatch) -> None:
    import datetime as dt

    from resilient_etl.hooks.warehouse.schema import etl_checkpoints
    from resilient_etl.pipeline import chaos

    write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=ROWS, dirty_share=0)
    when = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    monkeypatch.setenv(chaos.CHAOS_ENV, '{"load.batch": {"fail_after": 1}}')
    chaos.reset()
    first = run_dag(logical_date=when)
    assert first.state == "failed"
    with WarehouseHook().begin() as conn:
        committed = conn.execute(select(func.coalesce(func.sum(etl_checkpoints.c.rows), 0))).scalar_one()
    assert committed == 240  # two batches of 120 committed before the injected failure
    monkeypatch.delenv(chaos.CHAOS_ENV)
    second = run_dag(logical_date=when)
    assert second.state == "success" and second.run_id == first.run_id
    with WarehouseHook().begin() as conn:
        chunks = conn.execute(
            select(etl_checkpoints.c.first_line, etl_checkpoints.c.last_line, etl_checkpoints.c.rows).order_by(etl_checkpoints.c.first_line)
        ).all()
        loaded = conn.execute(select(func.count()).select_from(suppliers)).scalar_one()
        run = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == second.run_id)).one()
    assert sum(c.rows for c in chunks) == ROWS and loaded == ROWS  # every row exactly once
    assert all(b.first_line == a.last_line + 1 for a, b in zip(chunks, chunks[1:]))
    assert (run.rows_in, run.rows_loaded) == (ROWS, ROWS)

    # full_refresh on the same run starts over: the file is staged, looked up and loaded again
    import shutil

    (archived,) = pipeline_config["archive"].glob("*/suppliers.csv")
    shutil.copy(archived, pipeline_config["landing"] / "suppliers.csv")
    calls_before = api_connections.companies.registry.snapshot()["requests"]["company"]
    third = run_dag(logical_date=when, full_refresh=True)
    assert third.state == "success" and third.run_id == first.run_id
    assert api_connections.companies.registry.snapshot()["requests"]["company"] > calls_before  # looked up again
    with WarehouseHook().begin() as conn:
        rows_checkpointed = conn.execute(select(func.sum(etl_checkpoints.c.rows))).scalar_one()
        run = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == third.run_id)).one()
    assert rows_checkpointed == ROWS  # the old checkpoints were discarded, not added to
    assert (run.rows_in, run.rows_loaded) == (ROWS, ROWS)


def _with_bad_postcodes(path: Path, rows: int, bad: int, seed: int) -> None:
    import csv

    write_sample_csv(path, rows=rows, dirty_share=0, seed=seed)
    records = list(csv.DictReader(path.open()))
    for r in records:
        r["supplier_id"] = f"{path.stem}-{r['supplier_id']}"  # distinct ids per file
    for r in records[:bad]:
        r["postcode"] = "NOT A POSTCODE"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def test_a_file_that_warns_loads_and_a_file_that_fails_is_rejected(airflow_db, api_connections, sqlite_warehouse, pipeline_config) -> None:
    from resilient_etl.hooks.warehouse.schema import quality_results

    landing, rejected = pipeline_config["landing"], pipeline_config["rejected"]
    _with_bad_postcodes(landing / "a_warns.csv", rows=100, bad=2, seed=11)  # 2 % > warn 1 %, <= fail 5 %
    _with_bad_postcodes(landing / "b_fails.csv", rows=100, bad=10, seed=12)  # 10 % > fail 5 %
    dag_run = run_dag()
    assert dag_run.state == "failed"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["load"].state == "success"  # the good file was loaded …
    assert tis["reconcile"].state == "failed" and tis["reconcile"].try_number == 1  # … and the run fails, classified, not retried
    report = json.loads((rejected / "b_fails.csv.quality.json").read_text())
    assert report["verdict"] == "fail"
    assert report["rules"]["invalid_postcode"]["rows_failed"] == 10 and report["rules"]["invalid_postcode"]["lines"] == list(range(2, 12))
    assert (rejected / "b_fails.csv").exists() and not (landing / "b_fails.csv").exists()
    assert list(pipeline_config["archive"].glob("*/a_warns.csv"))
    with WarehouseHook().begin() as conn:
        verdicts = dict(
            conn.execute(select(quality_results.c.source_file, quality_results.c.verdict).where(quality_results.c.rule == "invalid_postcode")).all()
        )
        thresholds = conn.execute(
            select(quality_results.c.warn_threshold, quality_results.c.fail_threshold).where(quality_results.c.rule == "invalid_postcode")
        ).first()
        run = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == dag_run.run_id)).one()
        loaded_files = set(conn.execute(select(suppliers.c.source_file)).scalars())
    assert verdicts == {"a_warns.csv": "warn", "b_fails.csv": "fail"}
    assert tuple(thresholds) == (0.01, 0.05)
    assert run.status == "quality_failed" and (run.rows_in, run.rows_quarantined) == (100, 2)
    summary = json.loads(run.summary)
    assert summary["quality_failed_files"] == {"b_fails.csv": ["invalid_postcode"]} and summary["rows_in_quality_failed_files"] == 100
    assert loaded_files == {"a_warns.csv"}

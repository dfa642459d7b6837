"""
The manual overrides, each exercised through the command and real pipeline runs: quarantine replay
(exactly once), a rejected file requeued, live enrichment suspended for a declared outage, the
pipeline paused and resumed through a real Airflow API server; every one recorded and undone.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from _support.api_server import api_server
from _support.pipeline import run_dag
from resilient_etl.cli import main
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import pipeline_runs, quarantine, suppliers
from resilient_etl.pipeline.validate import CSV_COLUMNS
from resilient_etl_devtools.sandbox.data import write_sample_csv

pytestmark = pytest.mark.airflow_run


def _cli(capsys, *argv: str) -> tuple[int, object, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    try:
        return code, json.loads(out.out), out.err
    except ValueError:
        return code, out.out, out.err


def _run_summary(run_id: str) -> tuple[int, int, int]:
    with WarehouseHook().begin() as conn:
        r = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == run_id)).one()
    return r.rows_in, r.rows_loaded, r.rows_quarantined


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_quarantined_rows_replay_once_through_validate_enrich_and_load(airflow_db, api_connections, warehouse_conn, pipeline_config, capsys) -> None:
    landing = pipeline_config["landing"]
    drop = write_sample_csv(landing / "suppliers.csv", rows=120, dirty_share=0.04)
    first = run_dag()
    assert first.state == "success"
    warehouse = WarehouseHook()
    # rows a rule since fixed had quarantined (an older release): 15 good rows of another drop
    good = write_sample_csv(landing.parent / "held.csv", rows=15, dirty_share=0, seed=7)
    with good.path.open(newline="", encoding="utf-8") as f:
        held = [{**r, "supplier_id": f"HELD-{n:03d}"} for n, r in enumerate(csv.DictReader(f))]
    now = dt.datetime.now(dt.UTC)
    with warehouse.begin() as conn:
        conn.execute(
            insert(quarantine),
            [
                {
                    "run_id": "manual__held",
                    "stage": "validate",
                    "source_file": "held.csv",
                    "line_number": n + 2,
                    "raw_row": json.dumps(r),
                    "error_category": "invalid_postcode",
                    "detail": "postcode: rejected by the old outward-code rule",
                    "quarantined_at": now,
                }
                for n, r in enumerate(held)
            ],
        )

    code, listing, _ = _cli(capsys, "quarantine", "list", "-o", "json")
    assert code == 0
    waiting = {(r["run_id"], r["reason"]): r["waiting"] for r in listing}
    assert waiting[("manual__held", "invalid_postcode")] == 15
    assert sum(n for (run, _), n in waiting.items() if run == first.run_id) == len(drop.dirty_lines)

    code, done, err = _cli(
        capsys, "quarantine", "replay", "--run-id", "manual__held", "--reason", "invalid_postcode", "--why", "rule fixed", "-o", "json"
    )
    assert code == 0, err
    replay_file = Path(done[0]["file"])
    assert done[0]["rows"] == 15 and replay_file.parent == landing and replay_file.name.startswith("replay-manual__held-invalid_postcode-")
    with replay_file.open(newline="", encoding="utf-8") as f:
        assert [r["supplier_id"] for r in csv.DictReader(f)] == [r["supplier_id"] for r in held]
    # exactly once: the same replay again finds nothing
    code, _, err = _cli(capsys, "quarantine", "replay", "--run-id", "manual__held", "--reason", "invalid_postcode", "--why", "again")
    assert code == 2 and "nothing to replay" in err and "15 rows replayed before" in err
    # and the genuinely bad rows of the first run go back too: they are quarantined again, traced to the replay file
    code, bad, _ = _cli(capsys, "quarantine", "replay", "--run-id", first.run_id, "--why", "supplier says fixed", "-o", "json")
    assert code == 0 and bad[0]["rows"] == len(drop.dirty_lines)

    second = run_dag()
    assert second.state == "success"
    assert _run_summary(second.run_id) == (15 + len(drop.dirty_lines), 15, len(drop.dirty_lines))
    with warehouse.begin() as conn:
        loaded = conn.execute(select(suppliers.c.supplier_id, suppliers.c.source_file).where(suppliers.c.supplier_id.like("HELD-%"))).all()
        again = conn.execute(select(quarantine.c.source_file).where(quarantine.c.run_id == second.run_id)).scalars().all()
        marks = conn.execute(select(quarantine.c.replay_file).where(quarantine.c.run_id == "manual__held")).scalars().all()
    assert sorted(s for s, _ in loaded) == sorted(r["supplier_id"] for r in held) and {f for _, f in loaded} == {replay_file.name}
    assert len(again) == len(drop.dirty_lines) and all(f.startswith("replay-") for f in again)
    assert set(marks) == {replay_file.name}
    third = run_dag()  # nothing left in landing: a later run loads nothing twice
    assert third.state == "success"
    with warehouse.begin() as conn:
        assert conn.execute(select(func.count()).select_from(suppliers).where(suppliers.c.supplier_id.like("HELD-%"))).scalar_one() == 15

    code, trail, _ = _cli(capsys, "overrides", "list", "--action", "quarantine-replay", "-o", "json")
    assert [(o["target"], o["reason"]) for o in trail] == [(first.run_id, "supplier says fixed"), ("manual__held", "rule fixed")]


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_a_replay_not_yet_taken_is_withdrawn_by_undo(api_connections, warehouse_conn, pipeline_config, capsys) -> None:
    WarehouseHook().ensure_schema()
    with WarehouseHook().begin() as conn:
        conn.execute(
            insert(quarantine).values(
                run_id="r1",
                stage="validate",
                source_file="a.csv",
                line_number=2,
                raw_row=json.dumps(dict.fromkeys(CSV_COLUMNS, "x")),
                error_category="missing_fields",
                detail="d",
                quarantined_at=dt.datetime.now(dt.UTC),
            )
        )
    code, done, _ = _cli(capsys, "quarantine", "replay", "--run-id", "r1", "--why", "w", "-o", "json")
    assert code == 0 and Path(done[0]["file"]).exists()
    assert _cli(capsys, "overrides", "undo", str(done[0]["override"]), "--why", "wrong run")[0] == 0
    assert not Path(done[0]["file"]).exists()
    code, listing, _ = _cli(capsys, "quarantine", "list", "-o", "json")
    assert listing[0]["waiting"] == 1  # back to waiting: it can be replayed later


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_a_rejected_file_fixed_and_requeued_is_loaded(airflow_db, api_connections, warehouse_conn, pipeline_config, capsys) -> None:
    landing, rejected = pipeline_config["landing"], pipeline_config["rejected"]
    write_sample_csv(landing / "acme.csv", rows=60, dirty_share=0.4)  # a bad batch: fails data quality
    assert run_dag().state == "failed"  # the run says so (data_quality); the file is kept in rejected/
    code, files, _ = _cli(capsys, "rejected", "list", "-o", "json")
    assert code == 0 and [f["file"] for f in files] == ["acme.csv"] and files[0]["reason"].startswith("data quality: failed")

    code, _, err = _cli(capsys, "rejected", "requeue", "nope.csv", "--why", "x")
    assert code == 2 and "rejected files: acme.csv" in err
    write_sample_csv(rejected / "acme.csv", rows=60, dirty_share=0)  # the supplier sent it again, fixed
    code, moved, _ = _cli(capsys, "rejected", "requeue", "acme.csv", "--why", "fixed file from Acme", "--by", "dora", "-o", "json")
    assert code == 0 and Path(moved[0]["moved_to"]) == landing / "acme.csv"
    assert _cli(capsys, "rejected", "list", "-o", "json")[1] == []
    again = run_dag()
    assert again.state == "success" and _run_summary(again.run_id) == (60, 60, 0)
    code, trail, _ = _cli(capsys, "overrides", "list", "--action", "rejected-requeue", "-o", "json")
    assert [(o["target"], o["by"], o["reason"]) for o in trail] == [("acme.csv", "dora", "fixed file from Acme")]


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_suspended_live_enrichment_loads_everything_pending_and_the_backlog_catches_up(
    airflow_db, api_connections, warehouse_conn, pipeline_config, capsys
) -> None:
    code, made, _ = _cli(capsys, "pipeline", "suspend-enrichment", "--hours", "2", "--reason", "Companies House outage declared", "-o", "json")
    assert code == 0 and made[0]["action"] == "enrichment-suspend" and made[0]["until"]
    before = [sum(a.registry.snapshot()["requests"].values()) for a in (api_connections.postcodes, api_connections.companies)]
    write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=80, dirty_share=0)
    run = run_dag()
    assert run.state == "success"  # the non-live threshold does not apply to a declared outage
    after = [sum(a.registry.snapshot()["requests"].values()) for a in (api_connections.postcodes, api_connections.companies)]
    assert after == before  # not one API call
    with WarehouseHook().begin() as conn:
        statuses = dict(conn.execute(select(suppliers.c.enrichment_status, func.count()).group_by(suppliers.c.enrichment_status)).all())
    assert statuses == {"pending": 80}

    assert _cli(capsys, "overrides", "undo", str(made[0]["id"]), "--why", "outage over")[0] == 0
    assert run_dag().state == "success"  # the backlog re-enriches what was pending
    with WarehouseHook().begin() as conn:
        statuses = dict(conn.execute(select(suppliers.c.enrichment_status, func.count()).group_by(suppliers.c.enrichment_status)).all())
    assert statuses.get("pending", 0) == 0 and statuses["live"] == 80


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_pause_and_resume_go_through_the_airflow_api_and_are_recorded(warehouse_conn, pipeline_config, tmp_path, monkeypatch, capsys) -> None:
    import os

    env = {
        "RESILIENT_ETL_CONFIG": os.environ["RESILIENT_ETL_CONFIG"],
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(warehouse_conn),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
    with api_server(tmp_path / "airflow", env) as server:
        conn = {"conn_type": "http", "host": server.url, "login": "admin", "password": "admin"}
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(conn))
        code, paused, err = _cli(capsys, "pipeline", "pause", "--reason", "warehouse maintenance 02:00-03:00", "--by", "erin", "-o", "json")
        assert code == 0, err
        assert server.request("GET", "/api/v2/dags/company_enrichment")[1]["is_paused"] is True
        assert paused == [{"dag_id": "company_enrichment", "paused": True, "was_paused": False, "override": paused[0]["override"]}]
        code, status, _ = _cli(capsys, "pipeline", "status", "-o", "json")
        assert status[0] == {"dag_id": "company_enrichment", "paused": True} and status[1]["paused"] is False

        assert _cli(capsys, "overrides", "undo", str(paused[0]["override"]), "--why", "maintenance done", "--by", "erin")[0] == 0
        assert server.request("GET", "/api/v2/dags/company_enrichment")[1]["is_paused"] is False
        code, trail, _ = _cli(capsys, "overrides", "list", "-o", "json")
        assert [(o["action"], o["by"], o["reason"]) for o in trail[:2]] == [
            ("pipeline-resume", "erin", "maintenance done"),
            ("pipeline-pause", "erin", "warehouse maintenance 02:00-03:00"),
        ]
        assert trail[0]["reverses"] == paused[0]["override"]

        code, triggered, err = _cli(capsys, "pipeline", "trigger", "--reason", "replayed rows waiting", "--by", "erin", "-o", "json")
        assert code == 0, err
        status, run = server.request("GET", f"/api/v2/dags/company_enrichment/dagRuns/{triggered[0]['run_id']}")
        assert status == 200 and run["note"] == "replayed rows waiting"

        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({**conn, "password": "wrong"}))
        code, _, err = _cli(capsys, "pipeline", "pause")
        assert code == 1 and "login as 'admin' refused (HTTP 401)" in err and "wrong" not in err

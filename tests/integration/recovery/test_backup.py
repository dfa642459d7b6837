"""
Backup sets of a warehouse a real run filled (SQLite and PostgreSQL): made by the command, verified,
damaged, restored into an empty target with the counts checked, secrets encrypted or left out, the
task_state_store rows put back, and retention.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from cryptography.fernet import Fernet
from sqlalchemy import delete, func, select

from _support.pipeline import run_dag
from conftest import PG_HOST, PG_PORT, PG_USER
from resilient_etl.cli import main
from resilient_etl.config import config_path, get_config
from resilient_etl.config.models import RetentionConfig
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import manual_overrides, suppliers
from resilient_etl.recovery import backup, dumps
from resilient_etl.recovery.airflow_meta import AirflowMetadata
from resilient_etl.recovery.dumps import mssql
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.data import write_sample_csv

pytestmark = pytest.mark.airflow_run
ROWS = 150


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def loaded(airflow_db, api_connections, warehouse_conn, pipeline_config) -> dict[str, object]:
    """A warehouse one real company_enrichment run filled."""
    write_sample_csv(pipeline_config["landing"] / "suppliers.csv", rows=ROWS, dirty_share=0.04)
    assert run_dag().state == "success"
    return warehouse_conn


@pytest.fixture
def empty_target(warehouse_conn, tmp_path, monkeypatch, pg_server) -> dict[str, object]:
    """A connection ``restored`` to a warehouse that does not exist yet (a new file / a database not created)."""
    if warehouse_conn["conn_type"] == "sqlite":
        conn = {"conn_type": "sqlite", "host": str(tmp_path / "restored" / "warehouse.db")}
    else:
        conn = {"conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": PG_USER, "schema": f"retl_restored_{uuid.uuid4().hex[:8]}"}
    monkeypatch.setenv("AIRFLOW_CONN_RESTORED", json.dumps(conn))
    yield conn
    if conn["conn_type"] == "postgres":
        with pg_server.connect() as c:
            c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{conn["schema"]}" WITH (FORCE)'))


def test_a_backup_restores_into_an_empty_warehouse_with_every_row(loaded, empty_target, capsys) -> None:
    code, out, err = _cli(capsys, "backup", "-o", "json")
    assert code == 0, err
    made = json.loads(out)[0]
    assert "[1/4] warehouse" in err and "[4/4] backup set" in err  # progress, step by step
    chosen = backup.load_set(Path(made["path"]))
    manifest = chosen.manifest
    counts = backup.row_counts(WarehouseHook())
    assert manifest["warehouse"]["row_counts"] == counts and counts["suppliers"] > 0
    assert manifest["warehouse"]["schema_revision"] == "0004"
    assert manifest["warehouse"]["last_checkpoint"]["task_id"] == "load"
    assert manifest["warehouse"]["last_run"]["run_id"].startswith("manual__")
    assert {f["what"] for f in manifest["files"]} >= {"warehouse", "config", "airflow task_state_store"}
    assert manifest["airflow"]["state_store_rows"] > 0  # the enrich tasks' progress markers

    code, out, err = _cli(capsys, "restore", "latest", "--verify-only", "-o", "json")
    assert code == 0 and all(f["ok"] for f in json.loads(out))

    code, out, err = _cli(capsys, "restore", "latest", "--warehouse-conn-id", "restored", "-o", "json")
    assert code == 0, err
    report = json.loads(out)[0]
    assert report["row_counts"] == counts and report["schema_revision"] == "0004"
    restored = WarehouseHook("restored")
    with restored.begin() as conn, WarehouseHook().begin() as source:
        assert (
            conn.execute(select(suppliers).order_by(suppliers.c.supplier_id)).all()
            == source.execute(select(suppliers).order_by(suppliers.c.supplier_id)).all()
        )
        restore_record = conn.execute(select(manual_overrides).where(manual_overrides.c.action == "restore")).one()
    assert restore_record.target == chosen.name

    # a second restore onto what is now a full warehouse is refused, naming what is there
    code, _, err = _cli(capsys, "restore", "latest", "--warehouse-conn-id", "restored")
    assert code == 1 and "the target warehouse is not empty" in err and "breaker_events" in err


def test_a_damaged_set_is_named_and_never_restored(loaded, empty_target, capsys) -> None:
    assert _cli(capsys, "backup", "--no-airflow")[0] == 0
    chosen = backup.list_sets(get_config().backup.dir)[-1]
    dump = next(chosen.path / f["name"] for f in chosen.manifest["files"] if f["what"] == "warehouse")
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    code, out, err = _cli(capsys, "restore", chosen.name, "--verify-only", "-o", "json")
    assert code == 1 and f"DAMAGED: {dump.name}: checksum differs" in err
    assert [f["ok"] for f in json.loads(out) if f["file"] == dump.name] == [False]
    code, _, err = _cli(capsys, "restore", chosen.name, "--warehouse-conn-id", "restored")
    assert code == 1 and "is damaged" in err
    assert dumps.for_dialect(chosen.manifest["warehouse"]["dialect"]).emptiness(WarehouseHook("restored").engine.url) is None  # nothing written


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_secrets_are_encrypted_with_the_key_or_left_out(loaded, monkeypatch, capsys) -> None:
    assert _cli(capsys, "backup")[0] == 0
    plain = backup.list_sets(get_config().backup.dir)[-1]
    assert plain.manifest["secrets"]["mode"] == "omitted"
    assert "companies_house_default.password" in plain.manifest["secrets"]["left_out"]
    everything = b"".join(p.read_bytes() for p in plain.path.iterdir())
    assert DEFAULT_API_KEY.encode() not in everything
    stored = json.loads((plain.path / backup.CONNECTIONS).read_text())["connections"]
    assert {c["conn_id"] for c in stored} >= {"warehouse_default", "companies_house_default", "postcodes_io_default"}
    assert all(c["password"] is None for c in stored)

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("RESILIENT_ETL_BACKUP_KEY", key)
    assert _cli(capsys, "backup", "--keep-all", "--dir", str(plain.path.parent / "encrypted"))[0] == 0
    sealed = backup.list_sets(plain.path.parent / "encrypted")[-1]
    assert sealed.manifest["secrets"]["mode"] == "encrypted"
    assert DEFAULT_API_KEY.encode() not in b"".join(p.read_bytes() for p in sealed.path.iterdir())

    # a wrong key cannot read it; the right one restores the connection with its secret into the metadata DB
    from airflow.models import Connection
    from airflow.utils.session import create_session

    meta = AirflowMetadata()
    monkeypatch.setenv("RESILIENT_ETL_BACKUP_KEY", Fernet.generate_key().decode())
    with pytest.raises(backup.BackupError, match="not the key the set was encrypted with"):
        backup._restore_airflow(sealed, meta, environ=None, key_env="RESILIENT_ETL_BACKUP_KEY")
    monkeypatch.setenv("RESILIENT_ETL_BACKUP_KEY", key)
    try:
        result = backup._restore_airflow(sealed, meta, environ=None, key_env="RESILIENT_ETL_BACKUP_KEY")
        assert "companies_house_default" in result["connections_added"]
        with create_session() as session:
            conn = session.scalar(select(Connection).where(Connection.conn_id == "companies_house_default"))
            assert conn.password == DEFAULT_API_KEY
    finally:
        with create_session() as session:
            session.execute(delete(Connection).where(Connection.conn_id.in_(result["connections_added"])))


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_task_state_store_rows_come_back_for_runs_the_metadata_db_has(loaded, capsys) -> None:
    from airflow.models.task_state_store import TaskStateStoreModel as T
    from airflow.utils.session import create_session

    assert _cli(capsys, "backup")[0] == 0
    chosen = backup.list_sets(get_config().backup.dir)[-1]
    saved = json.loads((chosen.path / backup.STATE_STORE).read_text())
    assert saved and {r["dag_id"] for r in saved} == {"company_enrichment"}
    with create_session() as session:
        session.execute(delete(T).where(T.dag_id == "company_enrichment"))
    restored, no_run = AirflowMetadata().restore_state_store_rows(saved + [{**saved[0], "run_id": "manual__gone"}])
    assert (restored, no_run) == (len(saved), 1)
    with create_session() as session:
        assert session.scalar(select(func.count()).select_from(T).where(T.dag_id == "company_enrichment")) >= len(saved)


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_retention_keeps_the_newest_sets_and_prunes_old_ones(warehouse_conn, pipeline_config, tmp_path) -> None:
    WarehouseHook().ensure_schema()
    cfg = get_config()
    start = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)
    for day in range(10):
        backup.create_backup(cfg, config_dir=config_path().parent, root=tmp_path / "sets", now=start + dt.timedelta(days=day))
    crashed = tmp_path / "sets" / f"{backup.PARTIAL}20261001T020000Z"  # a backup that crashed long ago
    crashed.mkdir()
    now = start + dt.timedelta(days=12)
    os.utime(crashed, (now.timestamp() - 2 * 86_400,) * 2)
    deleted = backup.prune(tmp_path / "sets", RetentionConfig(keep_last=3, keep_days=5), now=now)
    kept = [s.name for s in backup.list_sets(tmp_path / "sets")]
    # the newest 3 stay whatever their age; of the rest, those younger than 5 days stay too
    assert kept == [(start + dt.timedelta(days=d)).strftime(backup.NAME_FORMAT) for d in (7, 8, 9)]
    assert len(deleted) == 8 and not list((tmp_path / "sets").glob(f"{backup.PARTIAL}*"))
    younger = backup.prune(tmp_path / "sets", RetentionConfig(keep_last=1, keep_days=30), now=now)
    assert younger == []  # all younger than 30 days


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_the_warehouse_backup_dag_writes_a_set_and_prunes_by_retention(loaded, pipeline_config) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag

    dags = Path(__file__).resolve().parents[3] / "dags"
    bag = BundleDagBag(dag_folder=str(dags / "warehouse_backup.py"), bundle_path=dags)
    assert bag.import_errors == {}
    cfg = get_config()
    old = backup.create_backup(cfg, config_dir=config_path().parent, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    for day in range(cfg.backup.retention.keep_last - 1):  # with the DAG's set: keep_last newer ones
        backup.create_backup(cfg, config_dir=config_path().parent, now=dt.datetime(2025, 2, 1 + day, tzinfo=dt.UTC))
    run = bag.dags["warehouse_backup"].test()
    assert run.state == "success"
    (ti,) = run.get_task_instances()
    summary = ti.xcom_pull(task_ids="backup")
    sets = backup.list_sets(cfg.backup.dir)
    assert sets[-1].name == summary["set"] and summary["suppliers"] == backup.row_counts(WarehouseHook())["suppliers"]
    assert summary["pruned"] == [old.name] and not old.path.exists()  # older than keep_days and beyond keep_last
    assert len(sets) == cfg.backup.retention.keep_last
    assert sets[-1].manifest["airflow"]["state_store_rows"] > 0


@pytest.mark.parametrize("warehouse_conn", ["sqlite"], indirect=True)
def test_a_metadata_db_that_is_down_leaves_the_airflow_part_out_and_says_so(warehouse_conn, pipeline_config) -> None:
    import subprocess
    import sys

    from resilient_etl_devtools.sandbox.sinks import free_port

    WarehouseHook().ensure_schema()
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/airflow"}
    done = subprocess.run([sys.executable, "-m", "resilient_etl.cli", "backup", "-o", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    made = backup.load_set(Path(json.loads(done.stdout)[0]["path"]))
    assert made.manifest["airflow"] == {"included": False, "why": "Airflow metadata DB unreachable: OperationalError"}
    assert "LEFT OUT: Airflow metadata DB unreachable" in done.stderr
    assert backup.verify_set(made) == [] and made.manifest["warehouse"]["included"]


def test_sql_server_sets_hold_the_statement_not_a_dump() -> None:
    statement = mssql.backup_statement("warehouse", "/var/opt/mssql/backup/2026.bak")
    assert statement == (
        "BACKUP DATABASE [warehouse] TO DISK = N'/var/opt/mssql/backup/2026.bak' WITH CHECKSUM, COMPRESSION, COPY_ONLY, INIT, STATS = 10"
    )
    assert mssql.restore_statements("ware]house", "x'.bak") == [
        "RESTORE VERIFYONLY FROM DISK = N'x''.bak' WITH CHECKSUM",
        "RESTORE DATABASE [ware]]house] FROM DISK = N'x''.bak' WITH CHECKSUM, RECOVERY, STATS = 10",
    ]

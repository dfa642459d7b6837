"""SQL Server cannot run here: assert on the SQL compiled for the mssql dialect."""

from __future__ import annotations

from sqlalchemy import create_mock_engine
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateTable

from resilient_etl.hooks.warehouse import url_for_connection
from resilient_etl.hooks.warehouse.dialects.mssql import mssql_merge_sql
from resilient_etl.hooks.warehouse.schema import metadata, suppliers


def test_every_table_compiles_for_mssql() -> None:
    ddl = {t.name: str(CreateTable(t).compile(dialect=mssql.dialect())) for t in metadata.sorted_tables}
    assert set(ddl) >= {"suppliers", "quarantine", "etl_checkpoints", "pipeline_runs", "postcode_cache", "company_cache", "incidents", "staged_rows"}
    assert "supplier_id VARCHAR(64) NOT NULL" in ddl["suppliers"]
    assert "PRIMARY KEY (supplier_id)" in ddl["suppliers"]
    assert "DATETIMEOFFSET" in ddl["suppliers"]  # timezone-aware timestamps
    assert "id INTEGER NOT NULL IDENTITY" in ddl["quarantine"]
    assert "BIT" in ddl["postcode_cache"]


def test_create_all_emits_ddl_for_mssql() -> None:
    statements: list[str] = []
    engine = create_mock_engine("mssql+pymssql://", lambda sql, *a, **k: statements.append(str(sql.compile(dialect=engine.dialect))))
    metadata.create_all(engine, checkfirst=False)
    assert sum(s.strip().startswith("CREATE TABLE") for s in statements) == len(metadata.tables)


def test_merge_upsert_for_mssql() -> None:
    sql = mssql_merge_sql(suppliers, ["supplier_id"], ["supplier_id", "company_name", "postcode"])
    assert sql.startswith("MERGE INTO suppliers WITH (HOLDLOCK) AS target USING (VALUES (:supplier_id, :company_name, :postcode))")
    assert "ON target.supplier_id = source.supplier_id" in sql
    assert "WHEN MATCHED THEN UPDATE SET target.company_name = source.company_name, target.postcode = source.postcode" in sql
    assert "target.supplier_id = source.supplier_id," not in sql.split("UPDATE SET")[1]  # keys are never updated
    assert sql.endswith(
        "WHEN NOT MATCHED THEN INSERT (supplier_id, company_name, postcode) VALUES (source.supplier_id, source.company_name, source.postcode);"
    )


def test_connection_urls_per_type() -> None:
    assert url_for_connection("sqlite", host="/tmp/w.db").render_as_string() == "sqlite:////tmp/w.db"
    pg = url_for_connection("postgres", host="db", login="etl", password="s3cr3t", port=5432, schema="wh")
    assert pg.drivername == "postgresql+psycopg2" and pg.database == "wh"
    assert "s3cr3t" not in str(pg)  # URLs render with the password masked
    assert url_for_connection("mssql", host="sql", login="sa", password="x", port=1433, schema="dw").drivername == "mssql+pymssql"


def test_savepoints_compile_for_mssql() -> None:
    from sqlalchemy.sql.elements import ReleaseSavepointClause, RollbackToSavepointClause, SavepointClause

    d = mssql.dialect()
    assert str(SavepointClause("sp_chunk").compile(dialect=d)) == "SAVE TRANSACTION sp_chunk"
    assert str(RollbackToSavepointClause("sp_chunk").compile(dialect=d)) == "ROLLBACK TRANSACTION sp_chunk"
    # SQL Server has no RELEASE: the dialect does not emit one when a nested transaction commits
    emitted: list[str] = []

    class Conn:
        def exec_driver_sql(self, sql: str) -> None:
            emitted.append(sql)

    d.do_release_savepoint(Conn(), "sp_chunk")
    assert emitted == [] and ReleaseSavepointClause  # (PostgreSQL and SQLite emit RELEASE SAVEPOINT)


def test_checkpoint_table_and_constraints_for_mssql() -> None:
    from resilient_etl.hooks.warehouse.schema import etl_checkpoints

    ddl = str(CreateTable(etl_checkpoints).compile(dialect=mssql.dialect()))
    assert "PRIMARY KEY (dag_id, run_id, task_id, map_index, source_file, chunk_index)" in ddl
    suppliers_ddl = str(CreateTable(suppliers).compile(dialect=mssql.dialect()))
    assert "CONSTRAINT ck_suppliers_enrichment_status CHECK (enrichment_status IN ('live', 'cached', 'fallback', 'pending'))" in suppliers_ddl


def test_load_select_compiles_for_mssql() -> None:
    from resilient_etl.pipeline.load.statements import COLUMNS, rows_select

    sql = str(rows_select().compile(dialect=mssql.dialect()))
    assert "FROM staged_rows LEFT OUTER JOIN run_enrichment AS pc ON pc.run_id = " in sql
    assert "LEFT OUTER JOIN run_enrichment AS co ON co.run_id = " in sql
    assert "CASE WHEN (pc.as_of IS NULL) THEN co.as_of" in sql
    assert "staged_rows.line_number BETWEEN :first_line AND :last_line" in sql  # a chunk: one range
    assert "CASE WHEN (pc.source IS NULL OR co.source IS NULL) THEN" in sql  # the enrichment status, in SQL
    lines = str(rows_select("lines").compile(dialect=mssql.dialect()))
    assert "staged_rows.line_number IN (__[POSTCOMPILE_lines])" in lines  # an isolation group
    assert len(COLUMNS) == len(suppliers.columns)  # every column of suppliers is written


def test_update_rows_is_one_keyed_update_executed_per_row_for_mssql() -> None:
    from resilient_etl.hooks.warehouse.dialects import mssql as dialect
    from resilient_etl.hooks.warehouse.schema import staged_rows

    sent: list[tuple[str, list[dict]]] = []

    class Conn:
        def execute(self, stmt, params) -> None:
            sent.append((str(stmt.compile(dialect=mssql.dialect())), params))

    rows = [{"run_id": "r", "source_file": "a.csv", "line_number": n, "status": "valid", "town": f"T{n}"} for n in (2, 3)]
    dialect.update_rows(Conn(), staged_rows, rows, ["run_id", "source_file", "line_number"])  # type: ignore[arg-type]
    ((sql, params),) = sent
    assert sql.startswith("UPDATE staged_rows SET town=:v_town, status=:v_status WHERE staged_rows.run_id = :k_run_id")  # table order
    assert "staged_rows.line_number = :k_line_number" in sql
    assert params[1] == {"k_run_id": "r", "k_source_file": "a.csv", "k_line_number": 3, "v_status": "valid", "v_town": "T3"}

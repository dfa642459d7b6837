"""
### warehouse_maintenance

Deletes the warehouse's working data older than `maintenance.retention_days` (config): staged rows,
per-run enrichment answers, load checkpoints, breaker events and idle pacing slots. The business
tables (`suppliers`, `quarantine`, `pipeline_runs`, `incidents`) are never touched.

Each statement runs in its own savepoint: one that fails is rolled back and reported (XCom) while
the others still commit.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from resilient_etl.config import get_config
from resilient_etl.operators.defaults import dag_arguments
from resilient_etl.operators.sql import SavepointSQLOperator

cfg = get_config()

with DAG(
    dag_id="warehouse_maintenance",
    schedule=cfg.maintenance.schedule,
    **dag_arguments(cfg, doc_md=__doc__, tags=["maintenance", "warehouse", "ops"]),
    render_template_as_native_obj=True,  # the cutoff binds as a timestamp, not a string
    params={"retention_days": Param(cfg.maintenance.retention_days, type="integer", minimum=1)},
) as dag:
    SavepointSQLOperator(
        task_id="purge_working_data",
        on_error="continue",
        parameters={"cutoff": "{{ dag_run.run_after - macros.timedelta(days=params.retention_days) }}"},
        sql=[
            "DELETE FROM staged_rows WHERE staged_at < :cutoff",
            "DELETE FROM run_enrichment WHERE run_id NOT IN (SELECT DISTINCT run_id FROM staged_rows)",
            "DELETE FROM etl_checkpoints WHERE committed_at < :cutoff",
            "DELETE FROM breaker_events WHERE at < :cutoff",
            "DELETE FROM shared_pacing WHERE updated_at < :cutoff",
        ],
    )

"""
### warehouse_backup

Writes one **backup set** on `backup.schedule` (config) into `backup.dir`: the warehouse
(`pg_dump` custom format on PostgreSQL, the online backup API on SQLite; SQL Server backs itself up
with `BACKUP DATABASE`, and the set says so), the `config/` files, the Airflow connections and
variables the DAGs use (secrets encrypted with the key in `$RESILIENT_ETL_BACKUP_KEY`, or left out
and the manifest says which) and the `task_state_store` rows of `backup.dags`. Each set has a
`manifest.json` with sizes, SHA-256 checksums, the schema revision, the last committed checkpoint
and row counts. Sets older than retention allows are pruned afterwards.

Verify a set with `resilient-etl restore SET --verify-only`; restore one with `resilient-etl restore`
(docs/disaster-recovery.md). XCom `return_value`: the set's name, size and what was pruned.
"""

from __future__ import annotations

from airflow.sdk import DAG

from resilient_etl.config import get_config
from resilient_etl.operators.backup import BackupOperator
from resilient_etl.operators.defaults import dag_arguments

cfg = get_config()

with DAG(
    dag_id="warehouse_backup", schedule=cfg.backup.schedule, **dag_arguments(cfg, doc_md=__doc__, tags=["backup", "disaster-recovery", "ops"])
) as dag:
    BackupOperator(task_id="backup")

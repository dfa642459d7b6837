"""The quickstart: sandbox APIs + SQLite warehouse + one real `airflow dags test` of company_enrichment."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from resilient_etl.commands.output import emit
from resilient_etl.commands.progress import progress_lines
from resilient_etl.config import load_config
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import pipeline_runs, quality_results, suppliers
from resilient_etl_devtools.localenv import airflow_env, connection_env, run_airflow
from resilient_etl_devtools.sandbox import DEMO_CH_LIMIT
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.data import write_sample_csv
from resilient_etl_devtools.sandbox.server import Sandbox
from resilient_etl_devtools.sandbox.sinks import SlackSink, SmtpSink


@contextlib.contextmanager
def _stopping(*sinks: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for sink in sinks:
            sink.stop()


DEMO_STEPS = 4  # sandbox up, sample written, metadata DB migrated, the run


def run_demo(project_dir: Path, *, rows: int = 1000) -> int:
    """
    Run the pipeline once end to end and print its reconciliation; return the exit code.

    :param project_dir: the repository; data goes to ``data/``, Airflow's home to ``.airflow/``
    :param rows: rows in the sample drop
    """
    data_dir = project_dir / "data"
    airflow_home = project_dir / ".airflow"
    warehouse_db = data_dir / "warehouse.db"
    cfg = load_config(project_dir / "config" / "resilience.yaml")
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    smtp, slack = SmtpSink(outbox=data_dir / "outbox").start(), SlackSink(outbox=data_dir / "outbox").start()
    with Sandbox(ch_limit=DEMO_CH_LIMIT) as sandbox, _stopping(smtp, slack), progress_lines("demo", total=DEMO_STEPS) as step:
        env = {
            # alerts are delivered to local sinks and land in data/outbox/
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp.connection()),
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack.connection()),
            **airflow_env(airflow_home, project_dir=project_dir),
            **connection_env(
                postcodes_url=sandbox.postcodes.url,
                companies_url=sandbox.companies.url,
                api_key=DEFAULT_API_KEY,
                warehouse={"conn_type": "sqlite", "host": str(warehouse_db)},
            ),
            "RESILIENT_ETL_CONFIG": str(project_dir / "config" / "resilience.yaml"),
            # `airflow dags test` crashes at the end of a DAG that has Deadline Alerts (Airflow 3.3.2).
            "RESILIENT_ETL__DEADLINES__DAG_RUN_ALERTS": "false",
        }
        step(f"[1/{DEMO_STEPS}] sandbox APIs: {sandbox.postcodes.url} (postcodes.io), {sandbox.companies.url} (Companies House)", done=1)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
        warehouse = WarehouseHook()
        warehouse.ensure_schema()
        drop = write_sample_csv(cfg.paths.landing / "suppliers_sample.csv", rows=rows)
        step(f"[2/{DEMO_STEPS}] sample drop: {drop.path} ({drop.rows} rows, {len(drop.dirty_lines)} dirty)", done=2)
        migrate = run_airflow(["db", "migrate"], env, log_file=data_dir / "logs" / "airflow-db-migrate.log")
        if migrate.returncode != 0:
            emit(migrate.stdout[-3000:], migrate.stderr[-3000:])
            return migrate.returncode
        step(f"[3/{DEMO_STEPS}] Airflow metadata DB migrated; running company_enrichment with `airflow dags test` …", done=3)
        test = run_airflow(["dags", "test", "company_enrichment"], env, log_file=data_dir / "logs" / "demo-dag-test.log")
        step(f"[4/{DEMO_STEPS}] company_enrichment ended (exit {test.returncode}) after {time.monotonic() - started:.1f} s", done=4)
    with warehouse.begin() as conn:
        last = conn.execute(select(pipeline_runs).order_by(pipeline_runs.c.finished_at.desc()).limit(1)).first()
        quality = conn.execute(
            select(quality_results.c.source_file, quality_results.c.rule, quality_results.c.rows_failed, quality_results.c.verdict).where(
                quality_results.c.run_id == (last.run_id if last else ""), quality_results.c.verdict != "pass"
            )
        ).all()
        total = conn.execute(select(func.count()).select_from(suppliers)).scalar_one()
        distinct = conn.execute(select(func.count(suppliers.c.supplier_id.distinct()))).scalar_one()
    if test.returncode != 0 or last is None or last.status != "success":
        emit((test.stdout + test.stderr)[-5000:])
        emit(f"company_enrichment FAILED (exit {test.returncode}); full log: {data_dir / 'logs' / 'demo-dag-test.log'}")
        return test.returncode or 1
    summary = json.loads(last.summary)
    emit()
    emit(f"run {last.run_id}: {last.status}")
    emit(f"  rows in          {last.rows_in}")
    emit(f"  loaded           {last.rows_loaded}")
    emit(f"  quarantined      {last.rows_quarantined}")
    emit(f"  pending          {last.rows_pending}")
    emit(f"  rejected files   {len(summary.get('rejected_files', []))}")
    for q in quality:
        emit(f"  data quality     {q.source_file}: {q.rule} {q.verdict} ({q.rows_failed} rows)")
    emit(f"warehouse {warehouse_db}: {total} suppliers ({distinct} distinct ids)")
    emit(f"done in {time.monotonic() - started:.1f}s")
    return 0 if total == distinct else 1

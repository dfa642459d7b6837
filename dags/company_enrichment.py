"""
### company_enrichment

Supplier onboarding: CSV drops in the landing folder are **extracted** into staging, **validated**
(bad rows go to `quarantine` with their line and reason; unreadable files to `rejected/`),
**enriched** from postcodes.io and Companies House, **loaded** into `suppliers` (upsert on
`supplier_id`, so a rerun never duplicates) and **reconciled**: `rows_in = loaded + quarantined +
pending`, one row per run in `pipeline_runs`, files archived. Finally the **backlog** of suppliers
loaded as `pending` (or from the reference fallback) while a circuit breaker was open is re-enriched.

When postcodes.io or Companies House fails, its circuit breaker opens and rows are enriched from
fallbacks (earlier answers, the bundled postcode extract) instead of failing the run; the run fails
only when more than `fallback.max_non_live_share` of its lookups are not live.

**Trigger form**: `full_refresh` restages files this run already staged (a plain clear resumes);
`landing_dir` reads a one-off folder instead of the configured landing folder.

Failures are classified (`docs/error-classification.md`) and alerted by severity (e-mail, Slack),
deduplicated into `incidents`; a run late past `deadlines.dag_run` raises deadline alerts, a task
past `deadlines.tasks` a soft-deadline alert.

Settings come from `config/resilience.yaml` (or `$RESILIENT_ETL_CONFIG`); a bad value fails this
file's import with the field named.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from resilient_etl.alerting.deadline import dag_run_deadlines
from resilient_etl.alerting.notifiers import RecoveryNotifier
from resilient_etl.config import get_config
from resilient_etl.operators.backlog import ReenrichBacklogOperator
from resilient_etl.operators.defaults import dag_arguments
from resilient_etl.operators.enrich import ApiSettings, EnrichCompaniesOperator, EnrichPostcodesOperator
from resilient_etl.operators.extract import ExtractSuppliersOperator
from resilient_etl.operators.load import LoadSuppliersOperator
from resilient_etl.operators.reconcile import ReconcileRunOperator
from resilient_etl.operators.validate import ValidateSuppliersOperator

cfg = get_config()

shared = {
    "shared_store": cfg.shared_state.store,
    "redis_conn_id": cfg.shared_state.redis_conn_id,
    "max_non_live_share": cfg.fallback.max_non_live_share,
}

with DAG(
    dag_id="company_enrichment",
    schedule=cfg.dag.schedule,
    # one run at a time (dag_arguments): two runs would stage the same landing files
    **dag_arguments(cfg, doc_md=__doc__, tags=["suppliers", "enrichment", "etl"]),
    # Tiered Deadline Alerts (warn, then page) from the run's queue time; the run's own deadline
    # incidents resolve when it succeeds.
    deadline=dag_run_deadlines(cfg.deadlines.dag_run) if cfg.deadlines.dag_run_alerts else None,
    on_success_callback=RecoveryNotifier(),
    params={
        "full_refresh": Param(False, type="boolean", description="Restage files this run already staged."),
        "landing_dir": Param(None, type=["null", "string"], description=f"One-off landing folder (default: {cfg.paths.landing})."),
    },
) as dag:
    extract = ExtractSuppliersOperator(
        task_id="extract", default_landing_dir=cfg.paths.landing, rejected_dir=cfg.paths.rejected, landing_dir="{{ params.landing_dir or '' }}"
    )
    validate = ValidateSuppliersOperator(
        task_id="validate",
        quality=cfg.quality,
        default_landing_dir=cfg.paths.landing,
        rejected_dir=cfg.paths.rejected,
        landing_dir="{{ params.landing_dir or '' }}",
    )
    enrich_postcodes = EnrichPostcodesOperator(
        task_id="enrich_postcodes",
        postcodes_io_conn_id=cfg.apis.postcodes_io.conn_id,
        timeout=cfg.apis.postcodes_io.timeout_seconds,
        bulk_size=cfg.apis.postcodes_io.bulk_size,
        retry_policy=cfg.retry.policy("postcodes_io"),
        breaker_policy=cfg.breakers.policy("postcodes_io"),
        reference_path=cfg.fallback.postcode_reference,
        cache_ttl_hours=cfg.apis.postcodes_io.cache_ttl_hours,
        **shared,
    )
    enrich_companies = EnrichCompaniesOperator(
        task_id="enrich_companies",
        companies_house_conn_id=cfg.apis.companies_house.conn_id,
        timeout=cfg.apis.companies_house.timeout_seconds,
        retry_policy=cfg.retry.policy("companies_house"),
        breaker_policy=cfg.breakers.policy("companies_house"),
        pace=cfg.apis.companies_house.pace,
        burst_reserve=cfg.apis.companies_house.burst_reserve,
        cache_ttl_hours=cfg.apis.companies_house.cache_ttl_hours,
        **shared,
    )
    load = LoadSuppliersOperator(
        task_id="load", batch_size=cfg.load.batch_size, chunk_size=cfg.load.chunk_size, max_quarantine_share=cfg.load.max_quarantine_share
    )
    reconcile = ReconcileRunOperator(
        task_id="reconcile", default_landing_dir=cfg.paths.landing, archive_dir=cfg.paths.archive, landing_dir="{{ params.landing_dir or '' }}"
    )

    reenrich_backlog = ReenrichBacklogOperator(
        task_id="reenrich_backlog",
        limit=cfg.fallback.backlog_batch,
        postcodes_io=ApiSettings.from_config(cfg, "postcodes_io"),
        companies_house=ApiSettings.from_config(cfg, "companies_house"),
        **shared,
    )

    extract >> validate >> [enrich_postcodes, enrich_companies] >> load >> reconcile >> reenrich_backlog

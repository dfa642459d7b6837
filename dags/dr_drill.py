"""
### dr_drill

The **disaster-recovery testing schedule**: on `disaster_recovery.drills.schedule` (config) it runs
each drill of `disaster_recovery.drills.scenarios` (`dr-restore`: back up, drop the warehouse,
restore the last set, re-derive later runs from the archive; `pg-failover`: lose the PostgreSQL
primary mid-load, promote its streaming standby) against the drill target
`disaster_recovery.drills.target` - never production, which is not drillable.

Each task fails, and alerts as `dr_drill_failed`, when its drill misses a drill target or the DR
objective of `disaster_recovery.objectives.warehouse` (RTO; RPO: the work the backup lacked, and no
row lost). Every result is kept in this warehouse's `drill_results`; health check `dr_drills:age`
warns when none passed within `disaster_recovery.drills.max_age_days`. docs/disaster-recovery.md
has the objectives against the latest measurements.
"""

from __future__ import annotations

from airflow.sdk import DAG

from resilient_etl.config import get_config
from resilient_etl.operators.defaults import dag_arguments
from resilient_etl_devtools.drills.operator import DrillOperator

cfg = get_config()
dr = cfg.disaster_recovery
warehouse = dr.objectives["warehouse"]

with DAG(
    dag_id="dr_drill",
    schedule=dr.drills.schedule,
    # a drill is measured, not retried: a second try would measure something else
    **dag_arguments(cfg, doc_md=__doc__, tags=["disaster-recovery", "drills", "ops"], retries=0),
) as dag:
    previous = None
    for scenario in dr.drills.scenarios:
        task = DrillOperator(
            task_id=f"drill_{scenario.replace('-', '_')}",
            scenario=scenario,
            target=dr.drills.target,
            rto_objective_seconds=warehouse.rto_minutes * 60,
            rpo_objective_seconds=warehouse.rpo_minutes * 60,
            record_warehouse_conn_id=cfg.warehouse.conn_id,
            # one drill at a time (they share the target), each whatever the previous one measured
            trigger_rule="all_done",
        )
        if previous is not None:
            previous >> task
        previous = task

"""
### chaos_drill

Runs one failure drill of `config/drills.yaml` (`resilient-etl drill run`) against the drill target
chosen in the trigger form — never production: a target not marked `drillable` is refused. The drill
checks the target's steady state, injects the fault, drives the pipeline, removes the fault (always),
applies the recovery and checks the steady state again; the task fails when a target (detection time,
RTO, rows lost or duplicated) is missed. The measured result is in the task's XCom and in the
warehouse table `drill_results` of the target; `resilient-etl drill report` renders `docs/drills.md`.

Manual trigger only. The `local` target builds its own deployment on loopback (sandbox APIs, alert
sinks, warehouse and Redis behind fault proxies), so a drill never touches this Airflow's own runs.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from resilient_etl.config import get_config
from resilient_etl.operators.defaults import dag_arguments
from resilient_etl_devtools.drills.catalogue import load_catalogue
from resilient_etl_devtools.drills.operator import DrillOperator

cfg = get_config()
catalogue = load_catalogue()

with DAG(
    dag_id="chaos_drill",
    schedule=None,
    # a drill is measured, not retried: a second try would measure something else
    **dag_arguments(cfg, doc_md=__doc__, tags=["drills", "chaos", "ops"], retries=0),
    params={
        "scenario": Param("postcodes-down", type="string", enum=list(catalogue.scenarios), description="The drill to run (config/drills.yaml)."),
        "target": Param(
            "local", type="string", enum=[n for n, t in catalogue.targets.items() if t.drillable], description="A target marked drillable."
        ),
    },
) as dag:
    DrillOperator(task_id="run_drill", scenario="{{ params.scenario }}", target="{{ params.target }}")

"""
Test DAG of tests/cluster: one task pinned to each worker's queue, both calling Companies House at once.

Each task makes ``calls`` calls ``pause`` seconds apart through the real CompaniesHouseHook (breaker,
pacing and retry budget as configured) and returns what each call met. With ``worker_2_waits_for_open``
the second task first waits (that many seconds at most) until the shared breaker reads open: the two
tasks start on two workers at times a loaded machine skews by seconds, so a fixed delay did not order them.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="cluster_probe",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["test", "cluster"],
    params={
        "calls": Param(10, type="integer"),
        "pause": Param(0.0, type="number"),
        "worker_2_waits_for_open": Param(0.0, type="number"),
        "max_attempts": Param(1, type="integer"),
        "pace": Param(False, type="boolean"),
        "breaker": Param(True, type="boolean"),
        "budget": Param(True, type="boolean"),
    },
):
    for n in (1, 2):

        @task(task_id=f"calls_on_worker_{n}", queue=f"worker-{n}")
        def calls(params: dict[str, Any] | None = None, ti: Any = None) -> dict[str, Any]:
            from resilient_etl.config import RetryPolicy
            from resilient_etl.exceptions import ApiError, BreakerOpenError
            from resilient_etl.hooks.companies_house import CompaniesHouseHook

            assert params is not None
            policy = RetryPolicy(dependency="companies_house", max_attempts=params["max_attempts"], initial_wait_seconds=0.05, max_wait_seconds=0.2)
            choices: dict[str, Any] = {"breaker": None if params["breaker"] else False, "retry_budget": None if params["budget"] else False}
            store = None
            if params["pace"]:
                from resilient_etl.config import get_config
                from resilient_etl.hooks.shared_state import configured_store

                store = configured_store(get_config())
            hook = CompaniesHouseHook(retry_policy=policy, timeout=5, pacing_store=store, **choices)
            if ti.task_id.endswith("2") and params["worker_2_waits_for_open"] and hook.breaker is not None:
                deadline = time.monotonic() + params["worker_2_waits_for_open"]
                while hook.breaker.current_state != "open" and time.monotonic() < deadline:
                    time.sleep(0.05)
            events: list[list[Any]] = []
            for i in range(params["calls"]):
                try:
                    hook.get_company(f"{(i * 7919 + int(ti.task_id[-1])) % 10**8:08d}")
                    outcome = "ok"
                except BreakerOpenError:
                    outcome = "breaker_open"
                except ApiError as exc:
                    outcome = type(exc).__name__
                events.append([time.time(), outcome])
                time.sleep(params["pause"])
            hook.close()
            return {"hostname": ti.hostname, "events": events}

        calls()

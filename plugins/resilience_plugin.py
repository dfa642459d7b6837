"""
Airflow plugin: ``GET /resilience/health`` on the API server, behind Airflow's authentication; the
run deadline reference and the listener that drops a finished run's pending deadlines (ADR 0007).

Answers the ``application/health+json`` document of :func:`resilient_etl.health.check_health`:
200 when passing or warning, 503 when failing; 401 without a valid token.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from resilient_etl.alerting.deadline import DeadlineCleanup, RunQueuedAt

app = FastAPI(title="resilient-etl", description="Health of the supplier pipeline and its dependencies")


@app.get("/health", responses={200: {"description": "pass or warn"}, 503: {"description": "fail"}})
async def health(user: GetUserDep) -> Any:
    """Check every dependency now (in parallel, each bounded by its timeout)."""
    from resilient_etl.health import FAIL, MEDIA_TYPE, check_health

    doc = await run_in_threadpool(check_health)
    return JSONResponse(doc, status_code=503 if doc["status"] == FAIL else 200, media_type=MEDIA_TYPE)


class ResiliencePlugin(AirflowPlugin):
    """Mounts the resilient-etl API under ``/resilience``."""

    name = "resilient_etl"
    fastapi_apps = [{"app": app, "url_prefix": "/resilience", "name": "resilient-etl"}]
    deadline_references = [RunQueuedAt]
    listeners = [DeadlineCleanup()]

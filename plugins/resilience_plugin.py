"""
Airflow plugin: the resilience console (``/resilience``: pages inside the UI, their JSON API, the
health endpoint), the run deadline reference and the listener that drops a finished run's pending
deadlines (ADR 0007).

The console is a "Resilience" entry in the UI's navigation and a "Resilience" tab on every DAG run
(``external_views`` with ``url_route``, so both render inside the UI); its routes and access rules are
in docs/console.md (ADR 0012).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from resilient_etl.alerting.deadline import DeadlineCleanup, RunQueuedAt
from resilient_etl_console.app import PREFIX, app

EXTERNAL_VIEWS = [
    {"name": "Resilience", "href": f"{PREFIX}/ui/overview", "url_route": "resilience", "destination": "nav", "icon": f"{PREFIX}/static/icon.svg"},
    {"name": "Resilience", "href": PREFIX + "/ui/runs/{DAG_ID}/{RUN_ID}", "url_route": "resilience-run", "destination": "dag_run"},
]


class ResiliencePlugin(AirflowPlugin):
    """Mounts the resilience console under ``/resilience`` and adds it to the UI."""

    name = "resilient_etl"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "resilient-etl console"}]
    external_views = EXTERNAL_VIEWS
    deadline_references = [RunQueuedAt]
    listeners = [DeadlineCleanup()]

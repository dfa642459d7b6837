"""
The operator's loop: a run of company_enrichment with the shipped config (tiered run deadlines on)
is cleared through the REST API of a real ``airflow api-server`` and through ``airflow tasks clear``.

Airflow 3.3.2 answers HTTP 500 to a clear when a DAG has a ``DAGRUN_QUEUED_AT`` deadline
(apache/airflow#70368); the shipped deadlines use a reference that the clear path leaves alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.api_server import ApiServer, api_server

pytestmark = pytest.mark.airflow_run
DAG = "company_enrichment"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ApiServer]:
    with api_server(tmp_path_factory.mktemp("clear") / "airflow", {}) as s:
        yield s


def _deadlines(server: ApiServer, run_id: str) -> list[tuple[str, int]]:
    db = Path(server.env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT d.deadline_time, d.missed FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id WHERE r.run_id = ?", (run_id,)
        ).fetchall()


def _state(server: ApiServer, run_id: str, task_id: str) -> str | None:
    status, ti = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}")
    assert status == 200, ti
    return ti["state"]


def _mark_success(server: ApiServer, run_id: str, task_id: str) -> None:
    status, body = server.request("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}", {"new_state": "success"})
    assert status == 200, body
    assert _state(server, run_id, task_id) == "success"


@pytest.fixture(scope="module")
def run_id(server: ApiServer) -> str:
    status, run = server.request("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None})
    assert status == 200, run
    # The shipped tiers (warn, page) are real Deadline rows of this run.
    assert len(_deadlines(server, run["dag_run_id"])) == 2
    return run["dag_run_id"]


def test_clearing_a_task_through_the_rest_api(server: ApiServer, run_id: str) -> None:
    _mark_success(server, run_id, "extract")
    status, body = server.request(
        "POST", f"/api/v2/dags/{DAG}/clearTaskInstances", {"dry_run": False, "dag_run_id": run_id, "task_ids": ["extract"], "only_failed": False}
    )
    assert status == 200, body
    assert [t["task_id"] for t in body["task_instances"]] == ["extract"]
    assert _state(server, run_id, "extract") is None


def test_clearing_a_whole_run_through_the_rest_api(server: ApiServer, run_id: str) -> None:
    _mark_success(server, run_id, "validate")
    status, body = server.request("POST", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/clear", {"dry_run": False})
    assert status == 200, body
    assert _state(server, run_id, "validate") is None
    assert len(_deadlines(server, run_id)) == 2  # clearing keeps the run's deadlines


def test_airflow_tasks_clear_really_clears(server: ApiServer, run_id: str) -> None:
    _mark_success(server, run_id, "load")
    # Airflow 3.3.2 matches -t as a substring of the task id, not the regex its help promises.
    done = server.airflow("tasks", "clear", DAG, "-t", "load", "-y")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _state(server, run_id, "load") is None, done.stdout[-3000:] + done.stderr[-3000:]

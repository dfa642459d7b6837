"""
The Airflow REST API, for the overrides that are Airflow's to make: pause and resume a DAG, trigger a
run. The connection ``recovery.airflow_api_conn_id`` gives the API server's URL (host) and a user
(login/password) for ``POST /auth/token``; the token is asked for once per client.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import requests

from resilient_etl.exceptions import ConfigError


class AirflowApiError(Exception):
    """The Airflow API refused or failed a call; carries the status and the API's detail."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AirflowApi:
    """
    Call the Airflow 3 REST API (``/api/v2``) as the connection's user.

    :param conn_id: an Airflow connection: host = the API server's base URL, login/password = the user
    :param timeout: seconds per request
    """

    def __init__(self, conn_id: str = "airflow_api", *, timeout: float = 10.0) -> None:
        self.conn_id = conn_id
        self.timeout = timeout

    @cached_property
    def _conn(self) -> Any:
        from airflow.sdk.bases.hook import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            raise ConfigError(
                f"no Airflow connection {self.conn_id!r} (recovery.airflow_api_conn_id): define it with host = the API server's URL "
                "and login/password = a user allowed to pause DAGs",
                field="recovery.airflow_api_conn_id",
            ) from None

    @property
    def base_url(self) -> str:
        """Return the API server's URL."""
        host = self._conn.host or ""
        if not host.startswith(("http://", "https://")):
            host = f"http://{host}" + (f":{self._conn.port}" if self._conn.port else "")
        return host.rstrip("/")

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        answer = session.post(
            f"{self.base_url}/auth/token", json={"username": self._conn.login, "password": self._conn.password}, timeout=self.timeout
        )
        if answer.status_code >= 400:
            raise AirflowApiError(
                f"Airflow API {self.base_url}: login as {self._conn.login!r} refused (HTTP {answer.status_code})", status=answer.status_code
            )
        session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return session

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = self._session.request(method, f"{self.base_url}/api/v2{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AirflowApiError(f"Airflow API {self.base_url} unreachable: {type(exc).__name__}") from exc
        if answer.status_code >= 400:
            try:
                detail = str(answer.json().get("detail", ""))
            except ValueError:
                detail = answer.text[:200]
            raise AirflowApiError(f"Airflow API {method} {path}: HTTP {answer.status_code} {detail}", status=answer.status_code, detail=detail)
        return answer.json() if answer.content else {}

    def dag(self, dag_id: str) -> dict[str, Any]:
        """Return the DAG's record (``is_paused`` …)."""
        return self._call("GET", f"/dags/{dag_id}")

    def set_paused(self, dag_id: str, paused: bool) -> bool:
        """Pause or resume ``dag_id``; return whether it was paused before."""
        before = bool(self.dag(dag_id)["is_paused"])
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused}, params={"update_mask": "is_paused"})
        return before

    def trigger(self, dag_id: str, *, conf: dict[str, Any] | None = None, note: str | None = None) -> str:
        """Trigger a run of ``dag_id`` now; return its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if note:
            body["note"] = note
        return str(self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

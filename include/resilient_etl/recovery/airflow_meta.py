"""
The part of the Airflow metadata database a backup set keeps: the connections and variables the DAGs
use, and the ``task_state_store`` rows of the pipeline's runs (progress markers that survive a clear).

Everything else in the metadata DB (run history, task instances, logs, serialized DAGs) is the
database's own to back up (``pg_dump`` of the metadata DB); docs/disaster-recovery.md says so.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select


class AirflowMetadata:
    """Read and restore connections, variables and ``task_state_store`` rows through Airflow's ORM."""

    def connections(self, conn_ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """
        Return (each defined connection of ``conn_ids`` as a dict, the ids not defined anywhere).

        Resolved as a task resolves them (environment, secrets backend, then the DB), so a connection
        given as ``AIRFLOW_CONN_*`` is kept too.
        """
        from airflow.sdk.bases.hook import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        found, missing = [], []
        for conn_id in conn_ids:
            try:
                conn = BaseHook.get_connection(conn_id)
            except AirflowNotFoundException:
                missing.append(conn_id)
                continue
            found.append(
                {
                    "conn_id": conn_id,
                    "conn_type": conn.conn_type,
                    "host": conn.host,
                    "schema": conn.schema,
                    "login": conn.login,
                    "password": conn.password,
                    "port": conn.port,
                    "extra": conn.extra or None,
                }
            )
        return found, missing

    def variables(self) -> list[dict[str, Any]]:
        """Return every Airflow variable of the metadata DB (key, value decrypted, description)."""
        from airflow.models import Variable
        from airflow.utils.session import create_session

        with create_session() as session:
            return [{"key": v.key, "value": v.get_val(), "description": v.description} for v in session.scalars(select(Variable))]

    def state_store_rows(self, dag_ids: list[str]) -> list[dict[str, Any]]:
        """Return the ``task_state_store`` rows of ``dag_ids``' runs."""
        from airflow.models.task_state_store import TaskStateStoreModel as T
        from airflow.utils.session import create_session

        with create_session() as session:
            return [
                {
                    "dag_id": r.dag_id,
                    "run_id": r.run_id,
                    "task_id": r.task_id,
                    "map_index": r.map_index,
                    "key": r.key,
                    "value": r.value,
                    "updated_at": r.updated_at.isoformat(),
                    "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                }
                for r in session.scalars(select(T).where(T.dag_id.in_(dag_ids)).order_by(T.id))
            ]

    def restore_connections(self, connections: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Add each connection the metadata DB lacks; return (added ids, ids kept as they were)."""
        from airflow.models import Connection
        from airflow.utils.session import create_session

        added, kept = [], []
        with create_session() as session:
            for c in connections:
                if session.scalar(select(Connection).where(Connection.conn_id == c["conn_id"])) is not None:
                    kept.append(c["conn_id"])
                    continue
                extra = c.get("extra")
                session.add(
                    Connection(
                        conn_id=c["conn_id"],
                        conn_type=c["conn_type"],
                        host=c.get("host"),
                        schema=c.get("schema"),
                        login=c.get("login"),
                        password=c.get("password"),
                        port=c.get("port"),
                        extra=extra if isinstance(extra, str) or extra is None else json.dumps(extra),
                    )
                )
                added.append(c["conn_id"])
        return added, kept

    def restore_variables(self, variables: list[dict[str, Any]]) -> int:
        """Add each variable the metadata DB lacks; return how many were added."""
        from airflow.models import Variable
        from airflow.utils.session import create_session

        added = 0
        with create_session() as session:
            for v in variables:
                if session.scalar(select(Variable).where(Variable.key == v["key"])) is None:
                    session.add(Variable(key=v["key"], val=v["value"], description=v.get("description")))
                    added += 1
        return added

    def restore_state_store_rows(self, rows: list[dict[str, Any]]) -> tuple[int, int]:
        """
        Put back the rows whose run exists in this metadata DB and that it lacks; return (restored, rows whose run is not here).

        A state row belongs to a DAG run (a foreign key): a run the metadata DB lost is not recreated here.
        """
        from airflow.models import DagRun
        from airflow.models.task_state_store import TaskStateStoreModel as T
        from airflow.utils.session import create_session

        restored = no_run = 0
        with create_session() as session:
            runs: dict[tuple[str, str], int | None] = {}
            for r in rows:
                key = (r["dag_id"], r["run_id"])
                if key not in runs:
                    runs[key] = session.scalar(select(DagRun.id).where(DagRun.dag_id == r["dag_id"], DagRun.run_id == r["run_id"]))
                run_pk = runs[key]
                if run_pk is None:
                    no_run += 1
                    continue
                exists = session.scalar(
                    select(T.id).where(T.dag_run_id == run_pk, T.task_id == r["task_id"], T.map_index == r["map_index"], T.key == r["key"])
                )
                if exists is None:
                    session.add(
                        T(
                            dag_run_id=run_pk,
                            dag_id=r["dag_id"],
                            run_id=r["run_id"],
                            task_id=r["task_id"],
                            map_index=r["map_index"],
                            key=r["key"],
                            value=r["value"],
                            updated_at=dt.datetime.fromisoformat(r["updated_at"]),
                            expires_at=dt.datetime.fromisoformat(r["expires_at"]) if r["expires_at"] else None,
                        )
                    )
                    restored += 1
        return restored, no_run

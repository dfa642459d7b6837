"""Airflow connections the hooks resolve beyond their own: does one exist, and a Redis client for one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis


def connection_exists(conn_id: str) -> bool:
    """Return whether an Airflow connection ``conn_id`` is defined (env, secrets backend or DB)."""
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def redis_client(conn_id: str) -> redis.Redis:
    """Return a Redis client for an Airflow connection (``redis://host:port/db``; db from schema or extra)."""
    import redis
    from airflow.sdk.bases.hook import BaseHook

    conn = BaseHook.get_connection(conn_id)
    db = conn.schema or conn.extra_dejson.get("db") or 0
    return redis.Redis(
        host=conn.host or "127.0.0.1", port=conn.port or 6379, db=int(db), password=conn.password or None, socket_timeout=2, socket_connect_timeout=2
    )

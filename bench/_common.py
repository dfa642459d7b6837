"""Shared set-up for the benchmarks: a sandbox and connections in this process's environment."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="retl-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from resilient_etl_devtools.localenv import connection_env
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.server import Sandbox


def use_sandbox(sandbox: Sandbox, warehouse_db: Path) -> None:
    """Point the pipeline's connections at ``sandbox`` and a SQLite warehouse file."""
    os.environ.update(
        connection_env(
            postcodes_url=sandbox.postcodes.url,
            companies_url=sandbox.companies.url,
            api_key=DEFAULT_API_KEY,
            warehouse={"conn_type": "sqlite", "host": str(warehouse_db)},
        )
    )


def row(label: str, *values: object) -> str:
    return f"{label:<34}" + "".join(f"{v:>16}" for v in values)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database on 127.0.0.1 for one measurement; yield its name; drop it after."""
    import sqlalchemy

    admin = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    name = f"retl_{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

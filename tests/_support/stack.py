"""A pipeline environment for tests that start Airflow processes: folders, a config file, connections, in os.environ meanwhile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from _support.paths import CONFIG_FILE
from resilient_etl_devtools.localenv import connection_env
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY


@dataclass(frozen=True)
class Stack:
    """The folders, the config file and the environment every process of the test gets."""

    dirs: dict[str, Path]
    config: Path
    env: dict[str, str]


@contextmanager
def pipeline_stack(tmp: Path, sandbox: Any, *, airflow_port: int, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """
    Make landing/archive/rejected under ``tmp``, a config over them (health against the API server on
    ``airflow_port``, 2 s check timeouts, shared state in the warehouse), connections to ``sandbox`` and a
    SQLite warehouse; put the environment in ``os.environ`` until the block ends.
    """
    dirs = {name: tmp / name for name in ("landing", "archive", "rejected")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    data = yaml.safe_load(CONFIG_FILE.read_text())
    data["paths"] = {k: str(v) for k, v in dirs.items()}
    data["health"].update(timeout_seconds=2, airflow_api_url=f"http://127.0.0.1:{airflow_port}")
    data["shared_state"]["store"] = "sql"
    config = tmp / "resilience.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {
        **connection_env(
            postcodes_url=sandbox.postcodes.url,
            companies_url=sandbox.companies.url,
            api_key=DEFAULT_API_KEY,
            warehouse={"conn_type": "sqlite", "host": str(tmp / "warehouse.db")},
        ),
        "RESILIENT_ETL_CONFIG": str(config),
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield Stack(dirs, config, env)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

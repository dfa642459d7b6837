"""The environment that runs Airflow and the pipeline locally: demo, tests and `airflow standalone`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from resilient_etl_devtools.paths import PROJECT_ROOT


def connection_env(*, postcodes_url: str, companies_url: str, api_key: str, warehouse: dict[str, object]) -> dict[str, str]:
    """
    Return ``AIRFLOW_CONN_*`` variables for the pipeline's connections (JSON form: numbers stay numbers).

    :param postcodes_url: postcodes.io base URL
    :param companies_url: Companies House base URL
    :param api_key: Companies House API key (the connection's password)
    :param warehouse: the warehouse connection, e.g. ``{"conn_type": "sqlite", "host": "/abs/path.db"}``
    """
    return {
        "AIRFLOW_CONN_POSTCODES_IO_DEFAULT": json.dumps({"conn_type": "postcodes_io", "host": postcodes_url}),
        "AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT": json.dumps({"conn_type": "companies_house", "host": companies_url, "password": api_key}),
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(warehouse),
    }


def sink_connection_env(*, smtp_port: int, slack_port: int) -> dict[str, str]:
    """
    Return ``smtp_default`` and ``slack_alerts`` pointing at the local alert sinks (``resilient-etl-dev sandbox --outbox``).

    :param smtp_port: the SMTP sink's port
    :param slack_port: the Slack-webhook sink's port
    """
    from resilient_etl_devtools.sandbox.sinks import slack_connection, smtp_connection

    return {
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp_connection(smtp_port)),
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack_connection(slack_port)),
    }


def airflow_env(airflow_home: Path, *, project_dir: Path = PROJECT_ROOT) -> dict[str, str]:
    """
    Return the Airflow settings for a local, SQLite-backed Airflow over this project's DAGs.

    :param airflow_home: where Airflow keeps its metadata DB and logs
    :param project_dir: the repository (dags/, plugins/, config/)
    """
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_dir / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_dir / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor starts this many workers up front
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        # Local means loopback: the API server binds 0.0.0.0 by default (Airflow then warns that the
        # deployment looks like production). Log servers cannot be bound: scripts/standalone.sh skips them.
        "AIRFLOW__API__HOST": "127.0.0.1",
    }


def airflow_bin() -> str:
    """Return the ``airflow`` executable beside the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def run_airflow(args: list[str], env: dict[str, str], *, log_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    """
    Run an ``airflow`` CLI command with ``env`` added to this process's environment.

    :param args: arguments after ``airflow``
    :param env: variables to add
    :param log_file: where to write its output (it is returned as well)
    """
    full_env = {**os.environ, **env}
    # airflow standalone and dags test spawn helpers by name: the venv's bin must come first on PATH.
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    proc = subprocess.run([airflow_bin(), *args], env=full_env, capture_output=True, text=True, check=False)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return proc

"""docker-compose.yaml is valid Compose and wires the contract connections (no Docker engine here)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_file_matches_the_compose_spec() -> None:
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    services = compose["services"]
    assert {"postgres", "redis", "mssql", "sandbox", "airflow-scheduler", "airflow-worker-1", "airflow-worker-2", "airflow-triggerer"} <= set(
        services
    )
    env = services["airflow-worker-1"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for conn in ("WAREHOUSE_DEFAULT", "POSTCODES_IO_DEFAULT", "COMPANIES_HOUSE_DEFAULT", "BREAKER_STORE"):
        assert f"AIRFLOW_CONN_{conn}" in env


def test_no_literal_secrets_in_compose() -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    assert "${MSSQL_SA_PASSWORD" in text and "${AIRFLOW_DB_PASSWORD" in text and "${AIRFLOW_JWT_SECRET" in text
    assert "sa_password" not in text.lower().replace("mssql_sa_password", "")

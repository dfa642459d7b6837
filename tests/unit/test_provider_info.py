"""The package registers as an Airflow provider with its two connection types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_airflow_providers_list_shows_the_provider() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "providers", "list", "-o", "json"], capture_output=True, text=True, env=os.environ.copy(), check=True)
    providers = {p["package_name"]: p for p in json.loads(proc.stdout[proc.stdout.index("[{") :])}
    assert "resilient-etl" in providers
    assert providers["resilient-etl"]["description"].startswith("Resilient supplier enrichment")


def test_connection_types_are_offered() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    assert hooks["postcodes_io"].hook_class_name == "resilient_etl.hooks.postcodes.PostcodesIoHook"
    assert hooks["companies_house"].hook_class_name == "resilient_etl.hooks.companies_house.CompaniesHouseHook"
    behaviours = ProvidersManager().field_behaviours
    assert behaviours["companies_house"]["relabeling"]["password"] == "API key"
    assert "password" in behaviours["postcodes_io"]["hidden_fields"]

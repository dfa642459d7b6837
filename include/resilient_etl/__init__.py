"""resilient_etl: the resilience provider for the supplier-onboarding pipeline."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe this provider to Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "resilient-etl",
        "name": "Resilient ETL",
        "description": "Resilient supplier enrichment: postcodes.io, Companies House and a SQL warehouse.",
        "versions": [__version__],
        "hooks": [
            {"integration-name": "postcodes.io", "python-modules": ["resilient_etl.hooks.postcodes"]},
            {"integration-name": "Companies House", "python-modules": ["resilient_etl.hooks.companies_house"]},
            {"integration-name": "Resilient ETL warehouse", "python-modules": ["resilient_etl.hooks.warehouse"]},
        ],
        "connection-types": [
            {
                "connection-type": "postcodes_io",
                "hook-class-name": "resilient_etl.hooks.postcodes.PostcodesIoHook",
            },
            {
                "connection-type": "companies_house",
                "hook-class-name": "resilient_etl.hooks.companies_house.CompaniesHouseHook",
            },
        ],
    }

"""resilient_etl: the resilience provider for the supplier-onboarding pipeline."""

from __future__ import annotations

__version__ = "0.1.0"


# Connection form layouts, declared as data so the UI needs no Flask-AppBuilder to render them.
UI_FIELD_BEHAVIOUR: dict[str, dict] = {
    "postcodes_io": {
        "hidden-fields": ["schema", "port", "login", "password"],
        "relabeling": {"host": "Base URL"},
        "placeholders": {"host": "https://api.postcodes.io"},
    },
    "companies_house": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "Base URL", "password": "API key"},
        "placeholders": {"host": "https://api.company-information.service.gov.uk"},
    },
}


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
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR["postcodes_io"],
            },
            {
                "connection-type": "companies_house",
                "hook-class-name": "resilient_etl.hooks.companies_house.CompaniesHouseHook",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR["companies_house"],
            },
        ],
    }

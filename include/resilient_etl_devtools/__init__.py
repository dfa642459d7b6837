"""Development tooling for resilient-etl: the sandbox APIs, the demo, the local Airflow environment, doc generators.

Nothing in the runtime provider (``resilient_etl``) imports this package."""

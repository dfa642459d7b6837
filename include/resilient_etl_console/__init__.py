"""
The resilience console: pages inside the Airflow UI (an ``external_views`` entry and a DAG-run tab) and
their JSON API, served by the plugin's FastAPI app behind Airflow's authentication (ADR 0012).

Apart from the runtime provider on purpose: it needs FastAPI and matplotlib, which workers never load.
"""

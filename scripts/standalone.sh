#!/usr/bin/env bash
# The Airflow UI over this project's DAGs on http://localhost:8080, against the sandbox APIs and the
# SQLite warehouse in data/. Ctrl-C stops Airflow and the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"   # airflow standalone spawns its components by name
eval "$(resilient-etl env)"
mkdir -p data/landing
resilient-etl sandbox --demo-quota --outbox data/outbox &   # the demo's quota: with the real 600 per 5 min, 1,000 new companies take ~8.3 min
sandbox_pid=$!
trap 'kill "$sandbox_pid" 2>/dev/null || true' EXIT
airflow db migrate >/dev/null
echo "UI: http://127.0.0.1:8080  user admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
echo "alerts: e-mail and Slack posts land in data/outbox/"
echo "drop a file with: resilient-etl sample data/landing/suppliers.csv   then trigger company_enrichment"
airflow standalone

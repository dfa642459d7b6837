#!/usr/bin/env bash
# The Airflow UI over this project's DAGs on http://127.0.0.1:8080, against the sandbox APIs, the local
# alert sinks and the SQLite warehouse in data/. Ctrl-C stops everything this script started.
#
# The components are started one by one rather than with `airflow standalone`, which cannot pass
# --skip-serve-logs: its scheduler and triggerer log servers would listen on every interface. On one
# machine the API server reads the task logs from the shared log folder, so nothing needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"   # Airflow spawns its task processes by name
# Ports can be moved (a second checkout, the tests): RESILIENT_ETL_{POSTCODES,COMPANIES,SMTP,SLACK}_PORT, AIRFLOW__API__PORT.
ports=(--postcodes-port "${RESILIENT_ETL_POSTCODES_PORT:-8701}" --companies-port "${RESILIENT_ETL_COMPANIES_PORT:-8702}"
       --smtp-port "${RESILIENT_ETL_SMTP_PORT:-8703}" --slack-port "${RESILIENT_ETL_SLACK_PORT:-8704}")
eval "$(resilient-etl-dev env "${ports[@]}")"
mkdir -p data/landing
pids=()
stop() {
  trap - EXIT INT TERM
  # Their children too (the LocalExecutor's workers): a component killed before it stopped them would orphan them.
  local all=("${pids[@]}")
  for pid in "${pids[@]}"; do all+=($(pgrep -P "$pid" || true)); done
  # TERM: background jobs of a script ignore SIGINT, and TERM is how each Airflow component stops cleanly
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 60); do
    alive=0
    for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return
    sleep 0.5
  done
  for pid in "${all[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM
# the demo's quota: with the real 600 per 5 min, 1,000 new companies take ~8.3 min
resilient-etl-dev sandbox --demo-quota --outbox data/outbox "${ports[@]}" & pids+=($!)
airflow db migrate >/dev/null
airflow scheduler --skip-serve-logs & pids+=($!)
airflow dag-processor & pids+=($!)
airflow triggerer --skip-serve-logs & pids+=($!)
airflow api-server --host "$AIRFLOW__API__HOST" --port "${AIRFLOW__API__PORT:-8080}" & pids+=($!)
echo "UI: http://$AIRFLOW__API__HOST:${AIRFLOW__API__PORT:-8080}  user admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
echo "alerts: e-mail and Slack posts land in data/outbox/"
echo "drop a file with: resilient-etl-dev sample data/landing/suppliers.csv   then trigger company_enrichment"
wait -n "${pids[@]}"   # one component ending ends the session (stop() takes the others down)

# Airflow 3.3.2 with this project's provider installed (used by docker-compose.yaml).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt pyproject.toml README.md /opt/resilient-etl/
COPY --chown=airflow:root constraints /opt/resilient-etl/constraints
COPY --chown=airflow:root include /opt/resilient-etl/include
WORKDIR /opt/resilient-etl
RUN pip install --no-cache-dir -r requirements.txt -c constraints/airflow-3.3.2-py3.11.txt
WORKDIR /opt/airflow

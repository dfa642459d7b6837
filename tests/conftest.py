"""
Shared fixtures. Airflow reads its configuration at import, so the test Airflow home is set up here,
before anything imports airflow.

Services: PostgreSQL (127.0.0.1:5432) and the sandbox APIs on loopback are real. Under CI=true a
missing PostgreSQL fails the tests that need it; elsewhere they skip with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="resilient-etl-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        # dag.test() crashes on DAGs with Deadline Alerts (Airflow 3.3.2); the scheduler test turns them on.
        "RESILIENT_ETL__DEADLINES__DAG_RUN_ALERTS": "false",
    }
)
os.environ.pop("RESILIENT_ETL_CONFIG", None)

import sqlalchemy  # noqa: E402

from resilient_etl_devtools.sandbox.server import Sandbox  # noqa: E402

PG_HOST = os.environ.get("RESILIENT_ETL_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("RESILIENT_ETL_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("RESILIENT_ETL_TEST_PG_USER", "postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


# the cluster fixtures (tests/cluster), registered here so every module shares one session cluster
pytest_plugins = ["_support.cluster"]


def require_service(name: str, problem: str) -> None:
    """Fail under CI (a missing service must never pass silently), skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true but unavailable: {problem}")
    pytest.skip(f"{name} unavailable: {problem}")


def pg_url(database: str = "postgres") -> sqlalchemy.URL:
    return sqlalchemy.URL.create("postgresql+psycopg2", username=PG_USER, host=PG_HOST, port=PG_PORT, database=database)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """Both sandbox APIs on loopback for the whole session (faults cleared by ``clean_faults``)."""
    with Sandbox(ch_limit=100_000) as sb:
        yield sb


@pytest.fixture
def clean_faults(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox with no faults before and after the test."""
    sandbox.postcodes.registry.clear()
    sandbox.companies.registry.clear()
    yield sandbox
    sandbox.postcodes.registry.clear()
    sandbox.companies.registry.clear()


@pytest.fixture
def api_connections(clean_faults: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """``postcodes_io_default`` and ``companies_house_default`` pointing at the sandbox."""
    from resilient_etl_devtools.localenv import connection_env
    from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY

    env = connection_env(
        postcodes_url=clean_faults.postcodes.url,
        companies_url=clean_faults.companies.url,
        api_key=DEFAULT_API_KEY,
        warehouse={"conn_type": "sqlite", "host": "/nonexistent"},
    )
    monkeypatch.setenv("AIRFLOW_CONN_POSTCODES_IO_DEFAULT", env["AIRFLOW_CONN_POSTCODES_IO_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", env["AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT"])
    return clean_faults


@pytest.fixture
def sqlite_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """``warehouse_default`` as a fresh SQLite file."""
    conn = {"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps(conn))
    return conn


@pytest.fixture(scope="session")
def pg_server() -> sqlalchemy.Engine:
    """An engine on the PostgreSQL server's maintenance database (fails under CI when it is down)."""
    engine = sqlalchemy.create_engine(pg_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        require_service("PostgreSQL", str(exc.orig).strip())
    return engine


@pytest.fixture
def pg_warehouse(pg_server: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """``warehouse_default`` as a fresh PostgreSQL database, dropped afterwards."""
    name = f"retl_test_{uuid.uuid4().hex[:10]}"
    with pg_server.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    conn_def = {"conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": PG_USER, "schema": name}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps(conn_def))
    yield conn_def
    with pg_server.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_conn(request: pytest.FixtureRequest) -> dict[str, object]:
    """``warehouse_default`` on each supported real database in turn."""
    return request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_warehouse")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's SQLite metadata DB, migrated once per session."""
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis server (fails under CI when it is down)."""
    import redis

    # a database of its own per test session, so two sessions on one machine do not flush each other
    url = os.environ.get("RESILIENT_ETL_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{1 + os.getpid() % 13}")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        require_service("Redis", str(exc))
    return url


@pytest.fixture
def breaker_store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``breaker_store`` connection on a flushed Redis test database."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("AIRFLOW_CONN_BREAKER_STORE", redis_url)
    return redis_url


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]):
    """
    Return a function giving everything logged so far: stdlib records and Airflow's structlog output
    (hooks log through ``airflow.task.hooks.*``, which renders to the captured stream).
    """
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def text() -> str:
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
        return caplog.text + "".join(seen)

    return text


@pytest.fixture
def alert_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, object]]:
    """A real SMTP server and a Slack webhook endpoint on loopback, wired as ``smtp_default`` / ``slack_alerts``."""
    from _support.alert_sinks import SlackSink, SmtpSink

    smtp, slack = SmtpSink().start(), SlackSink().start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(smtp.connection()))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(slack.connection()))
    yield smtp, slack
    smtp.stop()
    slack.stop()


@pytest.fixture
def pipeline_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, Path]:
    """The checkout's config with fast retries and temporary landing/archive/rejected folders (``config`` markers override sections)."""
    import yaml

    from _support.paths import CONFIG_FILE

    data = yaml.safe_load(CONFIG_FILE.read_text())
    for marker in request.node.iter_markers("config"):
        for section, values in marker.kwargs.items():
            data.setdefault(section, {}).update(values)
    dirs = {name: tmp_path / name for name in ("landing", "archive", "rejected")}
    data["paths"] = {k: str(v) for k, v in dirs.items()}
    data.setdefault("backup", {})["dir"] = str(tmp_path / "backups")
    data["load"]["batch_size"] = 120
    fast = {"initial_wait_seconds": 0.02, "max_wait_seconds": 0.1, "max_attempts": 6}
    data["retry"] = {"postcodes_io": fast, "companies_house": fast, "database": fast}
    path = tmp_path / "config" / "resilience.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RESILIENT_ETL_CONFIG", str(path))
    dirs["landing"].mkdir()
    return dirs

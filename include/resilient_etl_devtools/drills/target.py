"""
The ``local`` drill target: a whole deployment on loopback that a drill may break.

The sandbox APIs, the alert sinks, and the warehouse (PostgreSQL, else SQLite) and Redis behind
:class:`FaultProxy` links, so every dependency the pipeline talks to can be slowed, cut or refused; a
SQLite Airflow metadata DB; the pipeline run by ``dag.test`` in a process of its own (LocalExecutor semantics: the
task runs in the run's own process, which a kill drill kills). State lives in ``state_dir``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
import yaml

from resilient_etl.config import ResilienceConfig, load_config
from resilient_etl_devtools.drills.catalogue import API_LINKS, DrillTarget
from resilient_etl_devtools.drills.proxy import FaultProxy
from resilient_etl_devtools.localenv import airflow_bin, airflow_env, connection_env
from resilient_etl_devtools.paths import PROJECT_ROOT
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.server import Sandbox
from resilient_etl_devtools.sandbox.sinks import SlackSink, SmtpSink

PG_SERVER = ("127.0.0.1", int(os.environ.get("RESILIENT_ETL_TEST_PG_PORT", "5432")))
REDIS_SERVER = ("127.0.0.1", 6379)
DRILL_DATABASE = "resilient_etl_drills"
DRILL_REDIS_DB = 14  # the breaker store of drills: never the cluster's (15) nor a test session's (1-13)
DAG_ID = "company_enrichment"


@dataclass
class PipelineRun:
    """One ``airflow dags test`` of the pipeline: its process, and what it ended as."""

    logical_date: str
    process: subprocess.Popen[bytes]
    log_file: Path
    started: float
    ended: float | None = None
    state: str | None = None  # the DAG run's state in the metadata DB once the process ended
    run_id: str | None = None
    killed: bool = False

    @property
    def done(self) -> bool:
        return self.ended is not None


@dataclass
class LocalTarget:
    """
    Build, run and take down the ``local`` target.

    :param name: the target's name in the catalogue
    :param spec: its declaration
    :param state_dir: where its Airflow home, folders, config and logs live
    :param database: the PostgreSQL database of its warehouse
    :param redis_db: the Redis database of its shared breaker and quota state
    """

    name: str
    spec: DrillTarget
    state_dir: Path
    database: str = DRILL_DATABASE
    redis_db: int = DRILL_REDIS_DB
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    warehouse_server: tuple[str, int] = PG_SERVER  # where the warehouse proxy forwards (a failover moves it)

    def start(self) -> LocalTarget:
        """Start the sandbox, sinks and proxies; write the config (Airflow's DB is migrated before the first run)."""
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every health check's NOOP
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for folder in ("landing", "archive", "rejected", "logs", "outbox"):
            (self.state_dir / folder).mkdir(exist_ok=True)
        self.sandbox = Sandbox(ch_limit=100_000).start()
        self.smtp = SmtpSink(outbox=self.state_dir / "outbox").start()
        self.slack = SlackSink(outbox=self.state_dir / "outbox").start()
        self.proxies = {
            "postcodes_io": FaultProxy("postcodes_io", ("127.0.0.1", self.sandbox.postcodes.port)).start(),
            "companies_house": FaultProxy("companies_house", ("127.0.0.1", self.sandbox.companies.port)).start(),
            "redis": FaultProxy("redis", REDIS_SERVER).start(),
        }
        if self.spec.warehouse == "postgres":
            self.ensure_database()
            self.proxies["warehouse"] = FaultProxy("warehouse", PG_SERVER).start()
            warehouse: dict[str, Any] = {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": self.proxies["warehouse"].port,
                "login": "postgres",
                "schema": self.database,
                "extra": {"connect_timeout": 3},
            }
        else:
            warehouse = {"conn_type": "sqlite", "host": str(self.state_dir / "warehouse.db")}
        self.config_file = self.write_config()
        self.env = {
            **airflow_env(self.state_dir / "airflow"),
            "AIRFLOW__CORE__PARALLELISM": "2",
            **connection_env(
                postcodes_url=f"http://127.0.0.1:{self.proxies['postcodes_io'].port}",
                companies_url=f"http://127.0.0.1:{self.proxies['companies_house'].port}",
                api_key=DEFAULT_API_KEY,
                warehouse=warehouse,
            ),
            "AIRFLOW_CONN_BREAKER_STORE": f"redis://127.0.0.1:{self.proxies['redis'].port}/{self.redis_db}",
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(self.smtp.connection()),
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(self.slack.connection()),
            "RESILIENT_ETL_CONFIG": str(self.config_file),
            # `airflow dags test` crashes at the end of a DAG that has Deadline Alerts (Airflow 3.3.2).
            "RESILIENT_ETL__DEADLINES__DAG_RUN_ALERTS": "false",
        }
        # This process's own checks (health, breakers, warehouse counts) use the same connections.
        os.environ.update(self.env)
        return self

    def stop(self) -> None:
        """Stop every proxy, sink and server this target started."""
        for proxy in self.proxies.values():
            proxy.stop()
        for part in ("smtp", "slack", "sandbox"):
            if hasattr(self, part):
                getattr(self, part).stop()

    # -- configuration ---------------------------------------------------------------------------
    def write_config(self, overlay: dict[str, Any] | None = None) -> Path:
        """Write the target's config: the project's, the target's overrides, its own folders, ``overlay``."""
        from resilient_etl.config.loader import deep_merge

        data = yaml.safe_load((PROJECT_ROOT / "config" / "resilience.yaml").read_text())
        data = deep_merge(data, self.spec.config_overrides)
        data["paths"] = {k: str(self.state_dir / k) for k in ("landing", "archive", "rejected")}
        data.setdefault("backup", {})["dir"] = str(self.state_dir / "backups")
        data = deep_merge(data, overlay or {})
        path = self.state_dir / "resilience.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def config(self) -> ResilienceConfig:
        return load_config(self.config_file)

    def folder(self, name: str) -> Path:
        return self.state_dir / name

    # -- the warehouse, read past the proxy --------------------------------------------------------
    def direct_engine(self) -> sqlalchemy.Engine:
        """An engine on the warehouse that does not cross the fault proxy (the drill's own measurements)."""
        if not hasattr(self, "_engine"):
            if self.spec.warehouse == "postgres":
                host, port = self.warehouse_server
                url = sqlalchemy.URL.create("postgresql+psycopg2", username="postgres", host=host, port=port, database=self.database)
            else:
                url = sqlalchemy.URL.create("sqlite", database=str(self.state_dir / "warehouse.db"))
            self._engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
        return self._engine

    def _admin(self) -> sqlalchemy.Engine:
        host, port = self.warehouse_server
        url = sqlalchemy.URL.create("postgresql+psycopg2", username="postgres", host=host, port=port, database="postgres")
        return sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")

    def ensure_database(self) -> None:
        """Create the warehouse database when it does not exist (empty: the pipeline creates its schema)."""
        engine = self._admin()
        try:
            with engine.connect() as conn:
                if not conn.execute(sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": self.database}).first():
                    conn.execute(sqlalchemy.text(f'CREATE DATABASE "{self.database}"'))
        finally:
            engine.dispose()

    def drop_database(self) -> None:
        """Drop the warehouse database, cutting its sessions (the disaster of the dr-restore drill)."""
        self.direct_engine().dispose()
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def repoint_warehouse(self, server: tuple[str, int]) -> None:
        """Move the warehouse address (its proxy, and this process's direct engine) to ``server``."""
        self.warehouse_server = server
        if "warehouse" in self.proxies:
            self.proxies["warehouse"].repoint(server)
        if hasattr(self, "_engine"):
            self._engine.dispose()
            del self._engine

    def cli(self, *args: str, timeout: float = 600) -> str:
        """
        Run ``resilient-etl ARGS`` in the target's environment, as the runbook has a person do; return its stdout.

        :raises RuntimeError: it exited non-zero (its stderr quoted)
        """
        done = subprocess.run(
            [sys.executable, "-m", "resilient_etl.cli", *args],
            env=self._subprocess_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"resilient-etl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    # -- Airflow ---------------------------------------------------------------------------------
    def _subprocess_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(self.env)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _migrate_airflow(self) -> None:
        marker = self.state_dir / "airflow" / ".migrated"
        if marker.exists():
            return
        log = self.state_dir / "logs" / "airflow-db-migrate.log"
        with log.open("wb") as out:
            code = subprocess.run([airflow_bin(), "db", "migrate"], env=self._subprocess_env(), stdout=out, stderr=subprocess.STDOUT, check=False)
        if code.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed (exit {code.returncode}); see {log}")
        marker.touch()

    def start_run(self, logical_date: str | None = None) -> PipelineRun:
        """
        Start a run of ``company_enrichment`` (``dag.test`` in its own process, see :mod:`.dagtest`); with the
        ``logical_date`` of an earlier run, that run is cleared and runs again under its run id (the runbook's clear).
        """
        self._migrate_airflow()  # on the first run, not at start: a refused drill never needs Airflow's DB
        if logical_date is None:
            logical_date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
            time.sleep(1.0 - (time.time() % 1.0))  # one new run per second at most: logical dates are its key
        log = self.state_dir / "logs" / f"run-{logical_date.replace(':', '')}-{int(time.time() * 1000)}.log"
        out = log.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "resilient_etl_devtools.drills.dagtest", logical_date],
            env=self._subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        return PipelineRun(logical_date, process, log, time.time())

    def poll(self, run: PipelineRun) -> bool:
        """Return whether ``run`` has ended (recording its state and run id when it has)."""
        if run.done:
            return True
        if run.process.poll() is None:
            return False
        run.ended = time.time()
        run.run_id, run.state = self.dag_run(run.logical_date)
        return True

    def kill(self, run: PipelineRun) -> None:
        """SIGKILL the run's whole process group: the task dies mid-work, as on a lost worker."""
        try:
            os.killpg(run.process.pid, 9)
        except ProcessLookupError:
            pass
        run.process.wait()
        run.killed = True
        self.poll(run)

    def dag_run(self, logical_date: str) -> tuple[str | None, str | None]:
        """Return ``(run_id, state)`` of the DAG run at ``logical_date`` in the metadata DB."""
        when = dt.datetime.fromisoformat(logical_date).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        with sqlite3.connect(self.state_dir / "airflow" / "airflow.db", timeout=30) as db:
            row = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ? AND substr(logical_date, 1, 19) = ?", (DAG_ID, when)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def task_retries(self, run_ids: list[str]) -> int:
        """Return the task tries beyond each task's first, over ``run_ids`` (Airflow's retries and clears)."""
        if not run_ids:
            return 0
        marks = ",".join("?" * len(run_ids))
        with sqlite3.connect(self.state_dir / "airflow" / "airflow.db", timeout=30) as db:
            row = db.execute(f"SELECT coalesce(sum(max(try_number, 1) - 1), 0) FROM task_instance WHERE run_id IN ({marks})", run_ids).fetchone()
        return int(row[0])

    def sent_alerts(self) -> list[float]:
        """Return when each alert was accepted by the SMTP or Slack sink."""
        return sorted([m.at for m in self.smtp.messages] + [p[0] for p in self.slack.posts])

    def api_registry(self, api: str) -> Any:
        return (self.sandbox.postcodes if api == "postcodes_io" else self.sandbox.companies).registry

    def reset_state(self) -> list[Path]:
        """
        Forget the sandbox's faults and counters, and move files an earlier drill left in landing to
        ``leftovers/`` (a drill starts from a clean sandbox and an empty landing); return what was moved.
        """
        moved = []
        leftovers = [p for p in self.folder("landing").iterdir() if p.is_file()]
        if leftovers:
            aside = self.state_dir / "leftovers" / str(int(time.time()))
            aside.mkdir(parents=True, exist_ok=True)
            moved = [Path(shutil.move(str(p), aside / p.name)) for p in leftovers]
        for api in API_LINKS:
            self.api_registry(api).clear()
        for proxy in self.proxies.values():
            proxy.clear()
        return moved

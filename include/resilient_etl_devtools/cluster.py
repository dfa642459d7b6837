"""
A production-shaped Airflow deployment on this machine, started natively (there is no Docker engine here).

CeleryExecutor with PostgreSQL as the metadata DB (its own database on the local server), Redis as the
broker, ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and N Celery workers (distinct
``-H`` names, hostnames and log-server ports), the warehouse on PostgreSQL, breaker and pacing state in
Redis (``breaker_store``), the sandbox APIs and the local alert sinks. Every socket is on 127.0.0.1.

``docker-compose.yaml`` describes the same deployment; :func:`deployment_contract` is what both must
agree on (tests/unit/devtools/test_cluster.py compares them).

State lives in ``state_dir`` (default ``.cluster/`` in the checkout): ``cluster.json`` (the settings and
each component's PID and kernel start time), ``secrets.env`` (mode 0600) and ``logs/``. ``down`` stops
exactly the process groups ``up`` started, matched by PID *and* start time, so a reused PID is never hit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resilient_etl.commands.output import emit
from resilient_etl_devtools.hostname import HOSTNAME_ENV
from resilient_etl_devtools.localenv import airflow_bin, airflow_env, connection_env, sink_connection_env
from resilient_etl_devtools.paths import PROJECT_ROOT
from resilient_etl_devtools.sandbox import DEMO_CH_LIMIT

STATE_FILE = "cluster.json"
SECRETS_FILE = "secrets.env"
SECRET_ENV = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY")


@dataclass(frozen=True)
class ClusterSettings:
    """
    Where the cluster lives and listens.

    :param state_dir: PIDs, secrets, logs and the Airflow home
    :param api_port: the API server (UI and REST)
    :param log_server_port: the first worker's log server; worker N uses this + N - 1
    :param workers: how many Celery workers
    :param concurrency: task slots per worker
    :param metadata_db: the Airflow metadata database on the local PostgreSQL server
    :param warehouse_db: the warehouse database on the same server
    :param broker_db: Redis database of the Celery broker
    :param store_db: Redis database of the breaker and pacing state (``breaker_store``)
    :param ch_limit: the Companies House sandbox quota per 5 minutes
    :param dags_folder: the DAGs the cluster runs (default: ``code_dir``'s dags/)
    :param code_dir: the release the Airflow components run: a checkout (or ``git worktree``) whose
        dags/, plugins/, config/ and ``resilient_etl`` package are used (default: this checkout). A deploy
        or a rollback is ``down`` then ``up`` with another ``code_dir``.
    :param extra_env: added to every component's environment (a test lowers timeouts with it)
    """

    state_dir: Path = PROJECT_ROOT / ".cluster"
    api_port: int = 8080
    postcodes_port: int = 8701
    companies_port: int = 8702
    smtp_port: int = 8703
    slack_port: int = 8704
    log_server_port: int = 8793
    workers: int = 2
    concurrency: int = 2
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432"
    metadata_db: str = "resilient_etl_airflow"
    warehouse_db: str = "resilient_etl_warehouse"
    redis_url: str = "redis://127.0.0.1:6379"
    # the test suite takes Redis databases 1-13 (one per session) and the benchmarks 14
    broker_db: int = 0
    store_db: int = 15
    ch_limit: int = DEMO_CH_LIMIT
    dags_folder: Path | None = None
    code_dir: Path = PROJECT_ROOT
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON values."""
        return {k: (str(v) if isinstance(v, Path) else dict(v) if isinstance(v, Mapping) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ClusterSettings:
        """Read settings written by :meth:`to_json`."""
        paths = {f.name for f in dataclasses.fields(cls) if "Path" in str(f.type)}
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in doc.items()})

    @property
    def api_url(self) -> str:
        """The API server's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    def worker_names(self) -> list[str]:
        """Return the workers' names (their ``-H`` and hostname)."""
        return [f"worker-{n}" for n in range(1, self.workers + 1)]


@dataclass(frozen=True)
class Component:
    """One process of the cluster."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def deployment_contract(settings: ClusterSettings, secret_values: Mapping[str, str]) -> dict[str, str]:
    """
    Return the environment every Airflow component of the cluster shares.

    :param settings: the cluster
    :param secret_values: the JWT secret and API secret key (``SECRET_ENV``)
    """
    pg = settings.postgres_url.rstrip("/")
    home = settings.state_dir / "airflow"
    env = {
        **airflow_env(home, project_dir=settings.code_dir),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder or settings.code_dir / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.workers * settings.concurrency),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.api_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg.split('://', 1)[1]}/{settings.metadata_db}",
        "AIRFLOW__CELERY__BROKER_URL": f"{settings.redis_url}/{settings.broker_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg.split('://', 1)[1]}/{settings.metadata_db}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.concurrency),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "resilient_etl_devtools.hostname.worker_hostname",
        "RESILIENT_ETL_CONFIG": str(settings.code_dir / "config" / "resilience.yaml"),
        # the health check and the links in alerts point at this cluster's API server
        "RESILIENT_ETL__HEALTH__AIRFLOW_API_URL": settings.api_url,
        "RESILIENT_ETL__ALERTS__UI_BASE_URL": settings.api_url,
        **connection_env(
            postcodes_url=f"http://127.0.0.1:{settings.postcodes_port}",
            companies_url=f"http://127.0.0.1:{settings.companies_port}",
            api_key=_sandbox_key(),
            warehouse={"conn_type": "postgres", "host": "127.0.0.1", "port": _pg_port(pg), "login": _pg_user(pg), "schema": settings.warehouse_db},
        ),
        "AIRFLOW_CONN_BREAKER_STORE": f"{settings.redis_url}/{settings.store_db}",
        **sink_connection_env(smtp_port=settings.smtp_port, slack_port=settings.slack_port),
        **dict(secret_values),
        **_code_path(settings),
    }
    return {**env, **settings.extra_env}


def _code_path(settings: ClusterSettings) -> dict[str, str]:
    """Put another release's ``resilient_etl`` package first on the path (this checkout's dev tools stay in use)."""
    if settings.code_dir.resolve() == PROJECT_ROOT.resolve():
        return {}
    shim = settings.state_dir / "code"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "resilient_etl"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(settings.code_dir / "include" / "resilient_etl", target_is_directory=True)
    return {"PYTHONPATH": str(shim)}


def _sandbox_key() -> str:
    from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY

    return DEFAULT_API_KEY


def _pg_port(url: str) -> int:
    hostport = url.split("@")[-1].split("/")[0]
    return int(hostport.rsplit(":", 1)[1]) if ":" in hostport else 5432


def _pg_user(url: str) -> str:
    rest = url.split("://", 1)[1]
    return rest.split("@")[0].split(":")[0] if "@" in rest else "postgres"


def components(settings: ClusterSettings) -> list[Component]:
    """Return the cluster's processes in start order (stopped in reverse)."""
    airflow = airflow_bin()
    dev = str(Path(sys.executable).with_name("resilient-etl-dev"))
    result = [
        Component(
            "sandbox",
            (
                dev,
                "sandbox",
                "--ch-limit",
                str(settings.ch_limit),
                "--outbox",
                str(settings.state_dir / "outbox"),
                *("--postcodes-port", str(settings.postcodes_port), "--companies-port", str(settings.companies_port)),
                *("--smtp-port", str(settings.smtp_port), "--slack-port", str(settings.slack_port)),
            ),
            # the fake APIs are this checkout's dev tools with this checkout's runtime: never the other
            # release's package a rollback puts first on the Airflow components' path
            {"PYTHONPATH": ""},
        ),
        Component("api-server", (airflow, "api-server", "--host", "127.0.0.1", "--port", str(settings.api_port))),
        # Log servers bind every interface: the scheduler's and triggerer's are not needed (their logs
        # are files the API server reads); each worker gets its own on loopback below.
        Component("scheduler", (airflow, "scheduler", "--skip-serve-logs")),
        Component("dag-processor", (airflow, "dag-processor")),
        Component("triggerer", (airflow, "triggerer", "--skip-serve-logs")),
    ]
    for n, name in enumerate(settings.worker_names()):
        port = str(settings.log_server_port + n)
        worker_env = {HOSTNAME_ENV: name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": port}
        result.append(
            Component(
                f"{name}-logs",
                (sys.executable, "-m", "uvicorn", "--factory", "airflow.utils.serve_logs.log_server:get_app", "--host", "127.0.0.1", "--port", port),
                worker_env,
            )
        )
        result.append(
            Component(
                name,
                # its own queue too, so a task (a test, a drill) can be pinned to one worker
                (airflow, "celery", "worker", "-H", name, "-c", str(settings.concurrency), "-q", f"default,{name}", "--skip-serve-logs"),
                worker_env,
            )
        )
    return result


# --- processes ---------------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """Return the kernel start time of ``pid`` (clock ticks since boot), or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _group_members(pgid: int, not_before: int) -> list[int]:
    """
    Return the live processes ``up`` started as ``pgid``: its process group and every descendant.

    Descendants count even in a session of their own (Airflow's supervisor starts each task process so),
    and only those started at or after ``not_before``, so a reused PID is never taken for ours.
    """
    procs: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, pgid, start)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[19]) >= not_before:
            procs[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    members = {pid for pid, (_, group, _) in procs.items() if group == pgid}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in procs.items() if ppid in members} - members
        members |= children
        grew = bool(children)
    return sorted(members)


@dataclass
class Cluster:
    """
    Start, inspect and stop the cluster described by ``settings``.

    :param settings: the cluster (read from ``state_dir/cluster.json`` by :meth:`load` once it was up)
    :param out: where progress lines go
    """

    settings: ClusterSettings
    out: Callable[[str], None] = emit

    @classmethod
    def load(cls, state_dir: Path, out: Callable[[str], None] = emit) -> Cluster:
        """Return the cluster recorded in ``state_dir``, or one with default settings there."""
        path = state_dir / STATE_FILE
        if path.exists():
            return cls(ClusterSettings.from_json(json.loads(path.read_text())["settings"]), out)
        return cls(ClusterSettings(state_dir=state_dir), out)

    # state

    def _state(self) -> dict[str, Any]:
        path = self.settings.state_dir / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {"settings": self.settings.to_json(), "processes": {}}

    def _save(self, state: dict[str, Any]) -> None:
        path = self.settings.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def secret_values(self) -> dict[str, str]:
        """Return the JWT secret and API secret key every process shares: from the environment, else generated once."""
        path = self.settings.state_dir / SECRETS_FILE
        stored: dict[str, str] = {}
        if path.exists():
            stored = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        values = {name: os.environ.get(name) or stored.get(name) or secrets.token_urlsafe(32) for name in SECRET_ENV}
        if values != stored:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.writelines(f"{k}={v}\n" for k, v in values.items())
        return values

    def environment(self) -> dict[str, str]:
        """Return the environment shared by every component (the deployment contract)."""
        return deployment_contract(self.settings, self.secret_values())

    def running(self) -> dict[str, dict[str, Any]]:
        """Return the recorded processes that are still the ones ``up`` started."""
        return {name: rec for name, rec in self._state()["processes"].items() if _start_ticks(rec["pid"]) == rec["started"]}

    # up

    def up(self, *, timeout: float = 240.0) -> bool:
        """
        Start every component that is not running, then wait until all are healthy.

        :param timeout: seconds to wait for health
        :return: whether everything became healthy in time
        """
        t0 = time.monotonic()
        state = self._state()
        state["settings"] = self.settings.to_json()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        (self.settings.state_dir / "logs").mkdir(exist_ok=True)
        alive = self.running()
        todo = [c for c in components(self.settings) if c.name not in alive]
        if not todo:
            self.out("cluster already up: nothing started")
            return self.wait_healthy(timeout)
        env = {**_base_env(), **self.environment()}
        if any(c.name != "sandbox" and not c.name.startswith("worker") for c in todo) or not alive:
            self._prepare(env)
        for comp in todo:
            log = self.settings.state_dir / "logs" / f"{comp.name}.log"
            with log.open("ab") as fh:
                proc = subprocess.Popen(
                    comp.argv, env={**env, **comp.env}, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
            started = _start_ticks(proc.pid)
            state["processes"][comp.name] = {"pid": proc.pid, "started": started, "log": str(log)}
            self._save(state)
            self.out(f"started {comp.name} (pid {proc.pid})")
        healthy = self.wait_healthy(timeout)
        self.out(f"{'healthy' if healthy else 'NOT healthy'} after {time.monotonic() - t0:.1f} s")
        return healthy

    def _prepare(self, env: dict[str, str]) -> None:
        """Create the databases if missing and migrate the metadata DB."""
        import psycopg2

        admin = psycopg2.connect(f"{self.settings.postgres_url.rstrip('/')}/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            for db in (self.settings.metadata_db, self.settings.warehouse_db):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
                    self.out(f"created database {db}")
        admin.close()
        # migrated once per metadata DB and Airflow version: a redeploy of this project's code needs none
        from importlib.metadata import version

        marker = self.settings.state_dir / "metadata-migrated"
        stamp = f"{self.settings.metadata_db} apache-airflow-core {version('apache-airflow-core')}"
        if marker.exists() and marker.read_text() == stamp:
            return
        t0 = time.monotonic()
        log = self.settings.state_dir / "logs" / "db-migrate.log"
        with log.open("ab") as fh:
            proc = subprocess.run([airflow_bin(), "db", "migrate"], env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
        if proc.returncode:
            raise RuntimeError(f"airflow db migrate failed (exit {proc.returncode}); see {log}")
        marker.write_text(stamp)
        self.out(f"metadata DB {self.settings.metadata_db} migrated in {time.monotonic() - t0:.1f} s")

    def wait_healthy(self, timeout: float, *, poll: float = 1.0) -> bool:
        """Return once every component is healthy (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.status()
            if all(r["health"] == "healthy" for r in rows):
                return True
            if time.monotonic() >= deadline or any(r["state"] == "stopped" for r in rows):
                for r in rows:
                    if r["health"] != "healthy":
                        self.out(f"  {r['component']}: {r['state']}, {r['health']} {r['detail']}")
                return False
            time.sleep(poll)

    # status

    def status(self) -> list[dict[str, Any]]:
        """Return one row per component: name, PID, running or stopped, health and why."""
        state = self._state()["processes"]
        alive = self.running()
        probe = _HealthProbe(self.settings)
        rows = []
        for comp in components(self.settings):
            rec = state.get(comp.name)
            running = comp.name in alive
            health, detail = probe.check(comp.name) if running else ("unhealthy", "not running")
            rows.append(
                {
                    "component": comp.name,
                    "pid": rec["pid"] if rec else None,
                    "state": "running" if running else "stopped",
                    "health": health,
                    "detail": detail,
                }
            )
        return rows

    # down

    def down(self, *, grace: float = 20.0) -> list[str]:
        """
        Stop exactly the processes ``up`` started (their whole process groups), newest first.

        :param grace: seconds between SIGTERM and SIGKILL
        :return: the names of the components stopped
        """
        # SIGTERM lets each component stop its own children; what is left at the deadline gets SIGKILL
        state = self._state()
        procs = state["processes"]
        targets = {name: _group_members(rec["pid"], rec["started"] or 0) for name, rec in procs.items() if rec.get("started") is not None}
        for name in reversed(list(procs)):
            for pid in targets.get(name, []):
                _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        remaining = [pid for pids in targets.values() for pid in pids]
        while remaining and time.monotonic() < deadline:
            time.sleep(0.2)
            remaining = [pid for pid in remaining if _start_ticks(pid) is not None]
        for pid in remaining:
            _signal(pid, signal.SIGKILL)
        stopped = [name for name, pids in targets.items() if pids]
        state["processes"] = {}
        self._save(state)
        for name in stopped:
            self.out(f"stopped {name}")
        return stopped

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every process of component ``name``, its running tasks included (a drill: the worker's node dies); return their PIDs."""
        rec = self._state()["processes"][name]
        pids = _group_members(rec["pid"], rec["started"])
        for pid in pids:
            _signal(pid, sig)
        return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    # Airflow spawns its task processes by name: the venv's bin first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _HealthProbe:
    """Health of each component, with one API health call and one Celery ping for all of them."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self._api: dict[str, Any] | None | str = None
        self._pongs: set[str] | None = None

    def _api_health(self) -> dict[str, Any] | str:
        if self._api is None:
            try:
                with urllib.request.urlopen(f"{self.settings.api_url}/api/v2/monitor/health", timeout=3) as resp:
                    self._api = json.loads(resp.read())
            except (OSError, ValueError) as exc:
                self._api = f"API health unreachable: {exc}"
        return self._api

    def _celery_pongs(self) -> set[str]:
        if self._pongs is None:
            from celery import Celery

            app = Celery(broker=f"{self.settings.redis_url}/{self.settings.broker_db}")
            try:
                replies = app.control.ping(timeout=1.0)
                self._pongs = {name for reply in replies for name in reply}
            except OSError:
                self._pongs = set()
            finally:
                app.close()
        return self._pongs

    def check(self, name: str) -> tuple[str, str]:
        """Return ``(healthy|unhealthy|starting, detail)`` for component ``name``."""
        s = self.settings
        if name == "sandbox":
            ports = {"postcodes": s.postcodes_port, "companies": s.companies_port, "smtp": s.smtp_port, "slack": s.slack_port}
            closed = [k for k, port in ports.items() if not _listening(port)]
            return ("healthy", "4 listeners") if not closed else ("starting", f"not listening: {', '.join(closed)}")
        if name.endswith("-logs"):
            port = s.log_server_port + s.worker_names().index(name.removesuffix("-logs"))
            return ("healthy", f"127.0.0.1:{port}") if _listening(port) else ("starting", f"127.0.0.1:{port} not listening")
        if name.startswith("worker-"):
            return (
                ("healthy", f"celery@{name} answers ping")
                if f"celery@{name}" in self._celery_pongs()
                else ("starting", f"celery@{name} no ping reply")
            )
        doc = self._api_health()
        if isinstance(doc, str):
            return "starting", doc
        if name == "api-server":
            return ("healthy", "metadatabase healthy") if doc.get("metadatabase", {}).get("status") == "healthy" else ("unhealthy", json.dumps(doc))
        key = name.replace("-", "_")
        part = doc.get(key) or {}
        beat = next((v for k, v in part.items() if k.startswith("latest_") and k.endswith("heartbeat")), None)
        return ("healthy" if part.get("status") == "healthy" else "starting"), f"heartbeat {beat}"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def settings_from_env(state_dir: Path | None = None) -> ClusterSettings:
    """Return default settings, in ``state_dir`` or ``$RESILIENT_ETL_CLUSTER_DIR`` or the checkout's ``.cluster/``."""
    chosen = state_dir or (Path(os.environ["RESILIENT_ETL_CLUSTER_DIR"]) if os.environ.get("RESILIENT_ETL_CLUSTER_DIR") else None)
    return ClusterSettings(state_dir=chosen) if chosen else ClusterSettings()

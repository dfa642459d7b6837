"""
Backup sets: the warehouse, ``config/``, the Airflow connections and variables the DAGs use, and the
``task_state_store`` rows of the pipeline's runs, in one timestamped directory with a checksummed
manifest; verified, restored into an empty target, pruned by retention.

A set is written into ``.partial-<name>`` and renamed when its manifest is complete, so a crash never
leaves a half set that looks whole. Secrets (connection passwords and extras, variable values) are
encrypted with the Fernet key in ``backup.key_env``; without a key they are left out, and the manifest
says which.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import socket
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import desc, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from resilient_etl.config.models import ResilienceConfig, RetentionConfig
from resilient_etl.exceptions import ConfigError
from resilient_etl.hooks.warehouse import WarehouseHook, migrations
from resilient_etl.hooks.warehouse.schema import etl_checkpoints, metadata, pipeline_runs
from resilient_etl.recovery import dumps

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
CONFIG_ARCHIVE = "config.tar.gz"
CONFIG_SUFFIXES = (".yaml", ".yml")  # what config/ holds: resilience*.yaml, drills.yaml
CONNECTIONS, CONNECTIONS_ENCRYPTED = "airflow-connections.json", "airflow-connections.json.enc"
STATE_STORE = "airflow-task-state-store.json"
PARTIAL = ".partial-"
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
SECRET_FIELDS = ("password", "extra")


class BackupError(Exception):
    """A backup set is missing, damaged, or cannot be restored where asked; the message says which part."""


def used_connection_ids(cfg: ResilienceConfig) -> list[str]:
    """Return the Airflow connection ids the DAGs and commands use (from the config)."""
    ids = [
        cfg.warehouse.conn_id,
        cfg.apis.postcodes_io.conn_id,
        cfg.apis.companies_house.conn_id,
        cfg.alerts.email_conn_id,
        cfg.alerts.slack_conn_id,
        cfg.shared_state.redis_conn_id,
        cfg.recovery.airflow_api_conn_id,
    ]
    return list(dict.fromkeys(ids))


def sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fernet(key_env: str, environ: dict[str, str] | None = None) -> Any | None:
    """
    Return the Fernet cipher of the key in ``$key_env``, or None when it is not set.

    :raises ConfigError: the variable is set but is not a Fernet key (the variable named, never its value)
    """
    from cryptography.fernet import Fernet

    key = (os.environ if environ is None else environ).get(key_env)
    if not key:
        return None
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError(
            f"{key_env} is not a Fernet key (32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)",
            field=key_env,
        ) from None


def row_counts(warehouse: WarehouseHook) -> dict[str, int]:
    """Return the rows of every warehouse table that exists."""
    with warehouse.connect() as conn:
        present = set(inspect(conn).get_table_names())
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in metadata.sorted_tables if t.name in present}


def _warehouse_state(warehouse: WarehouseHook) -> dict[str, Any]:
    c, r = etl_checkpoints.c, pipeline_runs.c
    with warehouse.connect() as conn:
        last = conn.execute(select(etl_checkpoints).order_by(desc(c.committed_at)).limit(1)).first()
        runs = conn.execute(select(r.run_id, r.finished_at).order_by(desc(r.finished_at))).all()
        revision = migrations.current(conn)
    return {
        "schema_revision": revision,
        "last_checkpoint": (
            {
                "run_id": last.run_id,
                "task_id": last.task_id,
                "source_file": last.source_file,
                "chunk_index": last.chunk_index,
                "last_line": last.last_line,
                "committed_at": _iso(last.committed_at),
            }
            if last is not None
            else None
        ),
        "runs": len(runs),
        "last_run": {"run_id": runs[0].run_id, "finished_at": _iso(runs[0].finished_at)} if runs else None,
    }


def _iso(value: dt.datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


@dataclass
class BackupSet:
    """A set on disk and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        """Return the set's name (its UTC creation time)."""
        return self.path.name

    @property
    def created_at(self) -> dt.datetime:
        """Return when the set was made."""
        return dt.datetime.fromisoformat(self.manifest["created_at"])

    @property
    def bytes(self) -> int:
        """Return the size of the set's files."""
        return sum(f["bytes"] for f in self.manifest["files"])

    def as_row(self) -> dict[str, Any]:
        """Return the set as a flat mapping for ``-o`` output."""
        wh = self.manifest["warehouse"]
        return {
            "set": self.name,
            "created_at": self.manifest["created_at"],
            "bytes": self.bytes,
            "warehouse": wh["dialect"] if wh.get("included") else f"{wh['dialect']} (not in the set)",
            "suppliers": wh.get("row_counts", {}).get("suppliers", ""),
            "schema_revision": wh.get("schema_revision") or "",
            "secrets": self.manifest["secrets"]["mode"],
            "seconds": self.manifest["duration_s"],
        }


def load_set(path: Path) -> BackupSet:
    """
    Read the set at ``path``.

    :raises BackupError: no set there (no manifest, or a partial set), or the manifest is unreadable
    """
    if path.name.startswith(PARTIAL):
        raise BackupError(f"{path} is a partial set (its backup never finished): it cannot be restored")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{path}: no {MANIFEST}, so not a backup set") from None
    except ValueError as exc:
        raise BackupError(f"{path / MANIFEST}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path / MANIFEST}: format {manifest.get('format')!r}, this version reads format {FORMAT}")
    return BackupSet(path, manifest)


def list_sets(root: Path) -> list[BackupSet]:
    """Return the complete sets under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return [load_set(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(PARTIAL) and (p / MANIFEST).exists()]


def _file_entry(path: Path, what: str) -> dict[str, Any]:
    return {"name": path.name, "what": what, "bytes": path.stat().st_size, "sha256": sha256(path)}


def _config_archive(config_dir: Path, target: Path) -> list[str]:
    names = sorted(p.name for p in config_dir.iterdir() if p.is_file() and p.suffix in CONFIG_SUFFIXES and not p.name.startswith("."))
    with tarfile.open(target, "w:gz") as tar:
        for name in names:
            tar.add(config_dir / name, arcname=name)
    return names


Progress = Callable[[str], None]


@dataclass
class _Steps:
    """The steps of one backup or restore: ``[n/total] what: detail (s)`` lines, through ``report``."""

    total: int
    report: Progress
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def step(self, what: str, detail: str, since: float) -> None:
        self.done += 1
        self.report(f"[{self.done}/{self.total}] {what}: {detail} ({time.monotonic() - since:.1f} s; {time.monotonic() - self.started:.1f} s in all)")


def create_backup(
    cfg: ResilienceConfig,
    *,
    config_dir: Path,
    root: Path | None = None,
    airflow: Any | None = None,
    now: dt.datetime | None = None,
    environ: dict[str, str] | None = None,
    report: Progress = log.info,
) -> BackupSet:
    """
    Write one backup set under ``root`` (default ``backup.dir``) and return it.

    :param cfg: the configuration in force
    :param config_dir: the folder of the config file (archived whole)
    :param airflow: the Airflow metadata access (:class:`resilient_etl.recovery.airflow_meta.AirflowMetadata`); None: left out
    :param now: the set's time (its name)
    :param environ: where the backup key is read (default: the process's environment)
    :param report: called with one line per step (progress)
    """
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    root = root or cfg.backup.dir
    root.mkdir(parents=True, exist_ok=True)
    name = now.strftime(NAME_FORMAT)
    final = root / name
    if final.exists():
        raise BackupError(f"{final} exists already: one set per second")
    partial = root / f"{PARTIAL}{name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    cipher = fernet(cfg.backup.key_env, environ)
    warehouse = WarehouseHook(cfg.warehouse.conn_id)
    dialect = warehouse.dialect
    module = dumps.for_dialect(dialect)
    steps = _Steps(3 + (airflow is not None), report)
    files: list[dict[str, Any]] = []

    since = time.monotonic()
    state = _warehouse_state(warehouse)
    counts = row_counts(warehouse)
    wh: dict[str, Any] = {"dialect": dialect, "conn_id": cfg.warehouse.conn_id, "method": module.METHOD, **state, "row_counts": counts}
    try:
        module.dump(warehouse.engine.url, partial / module.FILE_NAME)
        files.append(_file_entry(partial / module.FILE_NAME, "warehouse"))
        wh["included"] = True
        steps.step("warehouse", f"{dialect}, {counts.get('suppliers', 0):,} suppliers, {files[-1]['bytes']:,} bytes", since)
    except NotImplementedError as exc:  # SQL Server backs itself up
        wh |= {"included": False, "why": "SQL Server backs itself up: run on the server", "statement": str(exc)}
        steps.step("warehouse", f"not in the set ({dialect}): {exc}", since)

    since = time.monotonic()
    config_files = _config_archive(config_dir, partial / CONFIG_ARCHIVE)
    files.append(_file_entry(partial / CONFIG_ARCHIVE, "config"))
    steps.step("config", f"{len(config_files)} files from {config_dir}", since)

    secrets: dict[str, Any] = {"mode": "encrypted" if cipher else "omitted", "key_env": cfg.backup.key_env}
    airflow_part: dict[str, Any] = {"included": airflow is not None}
    if airflow is not None:
        since = time.monotonic()
        try:
            part = _airflow_part(cfg, airflow, partial, cipher, secrets)
        except SQLAlchemyError as exc:  # the metadata DB is down: the warehouse set is worth more than waiting for it
            airflow_part = {"included": False, "why": f"Airflow metadata DB unreachable: {type(exc).__name__}"}
            steps.step("airflow", f"LEFT OUT: {airflow_part['why']}", since)
        else:
            files += part.pop("files")
            airflow_part |= part
            steps.step(
                "airflow",
                f"{len(part['connections'])} connections, {part['variables']} variables, {part['state_store_rows']} task_state_store rows; "
                f"secrets {secrets['mode']}",
                since,
            )

    manifest = {
        "format": FORMAT,
        "name": name,
        "created_at": now.isoformat(),
        "host": socket.gethostname(),
        "warehouse": wh,
        "config": {"dir": str(config_dir), "files": config_files},
        "airflow": airflow_part,
        "secrets": secrets,
        "files": files,
        "duration_s": round(time.monotonic() - started, 2),
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(partial, final)
    report(f"[{steps.total}/{steps.total}] backup set {final}: {sum(f['bytes'] for f in files):,} bytes in {manifest['duration_s']} s")
    return BackupSet(final, manifest)


def _airflow_part(cfg: ResilienceConfig, airflow: Any, partial: Path, cipher: Any | None, secrets: dict[str, Any]) -> dict[str, Any]:
    """Write the Airflow part of a set (connections, variables, state rows); return its manifest entry and files."""
    files = []
    connections, missing = airflow.connections(used_connection_ids(cfg))
    variables = airflow.variables()
    if cipher is not None:
        (partial / CONNECTIONS_ENCRYPTED).write_bytes(cipher.encrypt(json.dumps({"connections": connections, "variables": variables}).encode()))
        files.append(_file_entry(partial / CONNECTIONS_ENCRYPTED, "airflow connections and variables (encrypted)"))
    else:
        secrets["left_out"] = [f"{c['conn_id']}.{f}" for c in connections for f in SECRET_FIELDS if c.get(f)] + [
            f"variable {v['key']}" for v in variables
        ]
        stripped = {"connections": [{**c, **dict.fromkeys(SECRET_FIELDS)} for c in connections], "variables": []}
        (partial / CONNECTIONS).write_text(json.dumps(stripped, indent=2), encoding="utf-8")
        files.append(_file_entry(partial / CONNECTIONS, "airflow connections without secrets"))
    rows = airflow.state_store_rows(cfg.backup.dags)
    (partial / STATE_STORE).write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    files.append(_file_entry(partial / STATE_STORE, "airflow task_state_store"))
    return {
        "connections": [c["conn_id"] for c in connections],
        "connections_not_defined": missing,
        "variables": len(variables),
        "state_store_rows": len(rows),
        "dags": cfg.backup.dags,
        "files": files,
    }


def verify_set(backup: BackupSet) -> list[str]:
    """Return what is wrong with a set (missing files, sizes or checksums that differ); empty when it is whole."""
    problems = []
    for entry in backup.manifest["files"]:
        path = backup.path / entry["name"]
        if not path.is_file():
            problems.append(f"{entry['name']}: missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{entry['name']}: {path.stat().st_size} bytes, the manifest says {entry['bytes']}")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{entry['name']}: checksum differs from the manifest (damaged)")
    return problems


@dataclass
class RestoreReport:
    """What a restore did and found."""

    set: str
    warehouse: str
    row_counts: dict[str, int]
    schema_revision: str | None
    config_files: list[str] = field(default_factory=list)
    airflow: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "set": self.set,
            "warehouse": self.warehouse,
            "schema_revision": self.schema_revision,
            "row_counts": self.row_counts,
            "config_files": self.config_files,
            "airflow": self.airflow,
            "seconds": round(self.seconds, 2),
        }


def restore_set(
    backup: BackupSet,
    *,
    warehouse: WarehouseHook,
    config_dir: Path | None = None,
    airflow: Any | None = None,
    environ: dict[str, str] | None = None,
    key_env: str = "RESILIENT_ETL_BACKUP_KEY",
    report: Progress = log.info,
) -> RestoreReport:
    """
    Restore ``backup`` into an empty warehouse (and optionally config and Airflow); verify the counts.

    :param warehouse: the target warehouse; it must be empty (or, for PostgreSQL, absent: it is created)
    :param config_dir: an empty or new folder to unpack the config files into (None: not restored)
    :param airflow: the Airflow metadata access to restore connections, variables, state rows into (None: not)
    :raises BackupError: the set is damaged, the target is not empty, or the restored counts differ
    """
    started = time.monotonic()
    problems = verify_set(backup)
    if problems:
        raise BackupError(f"set {backup.name} is damaged: {'; '.join(problems)}")
    wh = backup.manifest["warehouse"]
    if not wh.get("included"):
        raise BackupError(f"set {backup.name} holds no warehouse ({wh.get('why')}): {wh.get('statement')}")
    if warehouse.dialect != wh["dialect"]:
        raise BackupError(f"set {backup.name} is a {wh['dialect']} warehouse; the target {warehouse.warehouse_conn_id} is {warehouse.dialect}")
    module = dumps.for_dialect(wh["dialect"])
    url = warehouse.engine.url
    if (why := module.emptiness(url)) is not None:
        raise BackupError(f"the target warehouse is not empty: {why}. Restore into an empty database (or drop this one first)")
    steps = _Steps(2 + (config_dir is not None) + (airflow is not None), report)
    since = time.monotonic()
    module.restore(backup.path / module.FILE_NAME, url)
    warehouse.engine.dispose()  # connections opened before the restore saw no tables
    steps.step("warehouse", f"{wh['dialect']} restored from {module.FILE_NAME}", since)

    since = time.monotonic()
    counts = row_counts(warehouse)
    with warehouse.connect() as conn:
        revision = migrations.current(conn)
    differ = {t: (counts.get(t), n) for t, n in wh["row_counts"].items() if counts.get(t) != n}
    if differ or revision != wh["schema_revision"]:
        details = [f"{t}: {got} rows, the set had {want}" for t, (got, want) in differ.items()]
        if revision != wh["schema_revision"]:
            details.append(f"schema revision {revision}, the set had {wh['schema_revision']}")
        raise BackupError(f"restore of {backup.name} does not match its manifest: {'; '.join(details)}")
    steps.step("verify", f"{len(counts)} tables, {counts.get('suppliers', 0):,} suppliers, revision {revision}: as in the manifest", since)
    result = RestoreReport(backup.name, warehouse.warehouse_conn_id, counts, revision)

    if config_dir is not None:
        since = time.monotonic()
        if config_dir.exists() and any(config_dir.iterdir()):
            raise BackupError(f"{config_dir} is not empty: config files are restored into an empty folder (compare, then copy what you need)")
        config_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(backup.path / CONFIG_ARCHIVE, "r:gz") as tar:
            tar.extractall(config_dir, filter="data")
            result.config_files = sorted(tar.getnames())
        steps.step("config", f"{len(result.config_files)} files into {config_dir}", since)

    if airflow is not None and backup.manifest["airflow"].get("included"):
        since = time.monotonic()
        result.airflow = _restore_airflow(backup, airflow, environ=environ, key_env=key_env)
        steps.step("airflow", json.dumps(result.airflow), since)
    result.seconds = time.monotonic() - started
    return result


def _restore_airflow(backup: BackupSet, airflow: Any, *, environ: dict[str, str] | None, key_env: str) -> dict[str, Any]:
    if (backup.path / CONNECTIONS_ENCRYPTED).exists():
        cipher = fernet(key_env, environ)
        if cipher is None:
            raise BackupError(f"set {backup.name} has encrypted connections: set {key_env} to the key it was made with")
        from cryptography.fernet import InvalidToken

        try:
            secret = json.loads(cipher.decrypt((backup.path / CONNECTIONS_ENCRYPTED).read_bytes()))
        except InvalidToken:
            raise BackupError(f"set {backup.name}: {key_env} is not the key the set was encrypted with") from None
    else:
        secret = json.loads((backup.path / CONNECTIONS).read_text(encoding="utf-8"))
    added, kept = airflow.restore_connections(secret["connections"])
    variables = airflow.restore_variables(secret["variables"])
    rows = json.loads((backup.path / STATE_STORE).read_text(encoding="utf-8"))
    restored, no_run = airflow.restore_state_store_rows(rows)
    return {
        "connections_added": added,
        "connections_kept": kept,
        "variables_added": variables,
        "state_store_rows": restored,
        "state_store_rows_without_their_run": no_run,
        "secrets": backup.manifest["secrets"]["mode"],
    }


def prune(root: Path, retention: RetentionConfig, *, now: dt.datetime | None = None) -> list[Path]:
    """
    Delete the sets retention no longer keeps (and partial sets over a day old); return what was deleted.

    The newest ``keep_last`` sets always stay, whatever their age; another goes once older than ``keep_days``.
    """
    now = now or dt.datetime.now(dt.UTC)
    sets = list_sets(root)
    deleted = []
    for backup in sets[: max(0, len(sets) - retention.keep_last)]:
        if now - backup.created_at > dt.timedelta(days=retention.keep_days):
            shutil.rmtree(backup.path)
            deleted.append(backup.path)
    for partial in root.glob(f"{PARTIAL}*") if root.is_dir() else []:
        if now.timestamp() - partial.stat().st_mtime > 86_400:
            shutil.rmtree(partial)
            deleted.append(partial)
    for path in deleted:
        log.info("Backup retention: deleted %s", path)
    return deleted


def describe_bytes(n: int) -> str:
    """Return a byte count for people (``12.3 MB``)."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} bytes"

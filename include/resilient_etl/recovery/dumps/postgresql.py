"""
PostgreSQL: ``pg_dump --format=custom`` (compressed, restorable table by table), ``pg_restore`` into an
empty database, created when the disaster took it away.

The password goes to the tools in ``PGPASSWORD``, never on a command line a ``ps`` would show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from resilient_etl.exceptions import ConfigError

FILE_NAME = "warehouse.pgdump"
METHOD = "pg_dump --format=custom"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed (PostgreSQL client tools: Debian package postgresql-client)", field=name)
    return found


def _args(url: URL) -> tuple[list[str], dict[str, str]]:
    args = ["--host", url.host or "127.0.0.1", "--port", str(url.port or 5432), "--username", url.username or "postgres", "--no-password"]
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    return args, env


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def dump(url: URL, path: Path) -> None:
    """Dump the database at ``url`` to ``path`` (custom format, one consistent snapshot)."""
    args, env = _args(url)
    _run([_tool("pg_dump"), *args, "--format=custom", "--no-owner", "--file", str(path), url.database or "postgres"], env)


def _admin(url: URL) -> URL:
    return url.set(database="postgres")


def emptiness(url: URL) -> str | None:
    """Return why the target is not empty (its tables), or None when it is empty or does not exist."""
    engine = create_engine(_admin(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).first() is None:
                return None
    finally:
        engine.dispose()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).scalars().all()
    finally:
        engine.dispose()
    return f"database {url.database} holds {len(tables)} tables ({', '.join(tables[:5])}{', …' if len(tables) > 5 else ''})" if tables else None


def restore(path: Path, url: URL) -> None:
    """Restore the dump at ``path`` into the database of ``url``, creating it when it does not exist."""
    engine = create_engine(_admin(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    finally:
        engine.dispose()
    args, env = _args(url)
    _run(
        [_tool("pg_restore"), *args, "--no-owner", "--exit-on-error", "--single-transaction", "--dbname", url.database or "postgres", str(path)], env
    )

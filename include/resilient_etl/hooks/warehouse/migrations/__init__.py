"""
The warehouse schema's Alembic migrations (version table ``resilient_etl_alembic_version``).

* A warehouse with none of the pipeline's tables is created at the head revision in one step
  (``metadata.create_all``, then stamped), as ``ensure_schema`` always did.
* A warehouse made by the release before migrations (the tables, no version table) is at the baseline
  ``0001``: :func:`upgrade` stamps it there and runs the rest.
* The pipeline refuses a warehouse that is behind (:class:`SchemaOutOfDateError`, category
  configuration, naming both revisions) rather than failing mid-load on a missing column.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from resilient_etl.exceptions import SchemaOutOfDateError

__all__ = ["BASELINE", "VERSION_TABLE", "Revision", "SchemaOutOfDateError", "current", "downgrade", "ensure_current", "head", "history", "upgrade"]

VERSION_TABLE = "resilient_etl_alembic_version"


class _OnlySteps(logging.Filter):
    """
    Keep Alembic's "Running upgrade/downgrade ..." lines; drop the two it logs on every look at the
    version (each task takes one) and the stamp of a new warehouse (``create_all`` was always silent).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume", "Running stamp_revision"))


logging.getLogger("alembic.runtime.migration").addFilter(_OnlySteps())
BASELINE = "0001"
# a warehouse with any of these is not new (the shared-state tables alone can be made by the breaker's store)
PIPELINE_TABLES = ("suppliers", "quarantine", "etl_checkpoints", "pipeline_runs", "staged_rows")


@dataclass(frozen=True)
class Revision:
    """One migration, for ``db history``."""

    revision: str
    down_revision: str | None
    doc: str
    is_head: bool


def _config(**attributes: object) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes.update(attributes)
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """Return the head revision of the code."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def history() -> list[Revision]:
    """Return every migration, newest first."""
    script = ScriptDirectory.from_config(_config())
    heads = set(script.get_heads())
    return [
        Revision(
            str(r.revision),
            r.down_revision if isinstance(r.down_revision, str) or r.down_revision is None else ",".join(r.down_revision),
            (r.doc or "").strip(),
            r.revision in heads,
        )
        for r in script.walk_revisions()
    ]


def current(conn: Connection) -> str | None:
    """Return the warehouse's revision: stamped, ``0001`` for a pre-migrations warehouse, None when empty."""
    rev = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if rev is not None:
        return rev
    tables = set(inspect(conn).get_table_names())
    return BASELINE if tables & set(PIPELINE_TABLES) else None


def _stamp(conn: Connection, revision: str) -> None:
    command.stamp(_config(connection=conn), revision)


def _stamp_unversioned(conn: Connection, revision: str | None) -> None:
    """Record where a pre-migrations warehouse stands before migrating it."""
    if revision is not None and MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision() is None:
        _stamp(conn, revision)


def upgrade(conn: Connection, revision: str = "head") -> tuple[str | None, str]:
    """
    Bring the warehouse to ``revision`` inside the caller's transaction; return (revision before, after).

    :param conn: a connection to the warehouse, in a transaction the caller commits
    :param revision: the target (default: the head)
    """
    from resilient_etl.hooks.warehouse.schema import metadata

    before = current(conn)
    if before is None and revision == "head":
        metadata.create_all(conn, checkfirst=True)
        _stamp(conn, "head")
        return None, head()
    _stamp_unversioned(conn, before)
    command.upgrade(_config(connection=conn), revision)
    return before, current(conn) or ""


def downgrade(conn: Connection, revision: str) -> tuple[str | None, str | None]:
    """
    Take the warehouse back to ``revision`` (``-1`` for one step) inside the caller's transaction; return (before, after).

    :param conn: a connection to the warehouse, in a transaction the caller commits
    :param revision: the target revision, or a relative one (``-1``)
    """
    before = current(conn)
    _stamp_unversioned(conn, before)
    command.downgrade(_config(connection=conn), revision)
    return before, current(conn)


def ensure_current(conn: Connection) -> str:
    """
    Create an empty warehouse at the head; return the revision, or refuse one that is not at the head.

    :param conn: a connection to the warehouse, in a transaction the caller commits
    :raises SchemaOutOfDateError: the warehouse is at another revision than the code's head
    """
    want = head()
    have = current(conn)
    if have is None:
        upgrade(conn)
        return want
    if have != want:
        known = {r.revision for r in history()}
        hint = "run `resilient-etl db upgrade`" if have in known else "it was migrated by a newer release: deploy that code or `db downgrade` with it"
        raise SchemaOutOfDateError(
            f"the warehouse schema is at revision {have}, the code needs {want}: {hint} before running the pipeline", current=have, head=want
        )
    return want


def offline_sql(dialect_name: str, revision_range: str) -> str:
    """
    Return the SQL a migration range would run on ``dialect_name`` (``mssql``), compiled without a database.

    :param dialect_name: a SQLAlchemy dialect name
    :param revision_range: ``base:head``, ``0001:0002`` or, for downgrades, ``0002:0001``
    """
    cfg = _config(dialect_name=dialect_name)
    out = io.StringIO()
    cfg.output_buffer = out
    start, end = revision_range.split(":")
    if start != "base" and end != "head" and end < start:
        command.downgrade(cfg, revision_range, sql=True)
    else:
        command.upgrade(cfg, revision_range, sql=True)
    return out.getvalue()

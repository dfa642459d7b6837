"""Alembic environment of the warehouse: run by :mod:`resilient_etl.hooks.warehouse.migrations`, never by ``alembic`` on its own."""

from __future__ import annotations

from alembic import context

from resilient_etl.hooks.warehouse.migrations import VERSION_TABLE
from resilient_etl.hooks.warehouse.schema import metadata

config = context.config

# batch mode (render_as_batch): SQLite alters a table by copying it; the other dialects get ALTER TABLE
if context.is_offline_mode():
    # SQL for a dialect this machine cannot run (SQL Server): compiled, printed, never executed
    context.configure(
        dialect_name=config.attributes["dialect_name"],
        literal_binds=True,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
else:
    context.configure(connection=config.attributes["connection"], target_metadata=metadata, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

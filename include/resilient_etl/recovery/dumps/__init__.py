"""
Warehouse dumps, one module per dialect (as common-sql's dialects are): each dumps a database to one
file and restores that file into an empty database.

``for_dialect(name)`` returns the module; SQL Server's is documentation and SQL only (no server here,
and its native ``BACKUP DATABASE`` runs on the server, not in this process).
"""

from __future__ import annotations

from types import ModuleType

from resilient_etl.exceptions import ConfigError
from resilient_etl.recovery.dumps import mssql, postgresql, sqlite

_MODULES: dict[str, ModuleType] = {"sqlite": sqlite, "postgresql": postgresql, "mssql": mssql}


def for_dialect(name: str) -> ModuleType:
    """Return the dump module of dialect ``name`` (``sqlite``, ``postgresql``, ``mssql``)."""
    try:
        return _MODULES[name]
    except KeyError:
        raise ConfigError(f"no warehouse dump for dialect {name!r} (sqlite, postgresql, mssql)", field="conn_type") from None

"""
SQL Server: the server's own ``BACKUP DATABASE`` / ``RESTORE DATABASE`` (a .bak on the server's disk or
a URL), run by the DBA or an Agent job: a set made here records the statement and leaves the
warehouse out, and says so in its manifest. docs/disaster-recovery.md has the procedure.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

FILE_NAME = ""  # nothing in the set: the .bak lives where the server writes it
METHOD = "BACKUP DATABASE (run on the server)"


def _quoted(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


def backup_statement(database: str, disk: str) -> str:
    """Return the ``BACKUP DATABASE`` statement for ``database`` to the server-side file ``disk``."""
    disk = disk.replace("'", "''")
    return f"BACKUP DATABASE {_quoted(database)} TO DISK = N'{disk}' WITH CHECKSUM, COMPRESSION, COPY_ONLY, INIT, STATS = 10"


def restore_statements(database: str, disk: str) -> list[str]:
    """Return the statements that verify and restore ``disk`` as ``database`` (replacing nothing that exists)."""
    disk = disk.replace("'", "''")
    return [
        f"RESTORE VERIFYONLY FROM DISK = N'{disk}' WITH CHECKSUM",
        f"RESTORE DATABASE {_quoted(database)} FROM DISK = N'{disk}' WITH CHECKSUM, RECOVERY, STATS = 10",
    ]


def dump(url: URL, path: Path) -> None:
    """Refuse: SQL Server backs itself up (:func:`backup_statement`)."""
    raise NotImplementedError(backup_statement(url.database or "warehouse", f"{path.stem}.bak"))


def emptiness(url: URL) -> str | None:
    """Refuse: a SQL Server restore is ``RESTORE DATABASE`` on the server."""
    raise NotImplementedError(restore_statements(url.database or "warehouse", "warehouse.bak")[-1])


def restore(path: Path, url: URL) -> None:
    """Refuse: a SQL Server restore is ``RESTORE DATABASE`` on the server (:func:`restore_statements`)."""
    raise NotImplementedError(restore_statements(url.database or "warehouse", str(path))[-1])

"""SQLite: the online backup API (a consistent copy while the pipeline writes), restored the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import URL

FILE_NAME = "warehouse.sqlite"
METHOD = "sqlite3 online backup API"


def dump(url: URL, path: Path) -> None:
    """Copy the database at ``url`` to ``path`` page by page, consistent even while others write."""
    source = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True)
    target = sqlite3.connect(path)
    try:
        source.backup(target, pages=4096)
    finally:
        target.close()
        source.close()


def emptiness(url: URL) -> str | None:
    """Return why the target is not empty (its tables), or None when it is empty or absent."""
    path = Path(url.database or "")
    if not path.exists() or path.stat().st_size == 0:
        return None
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return f"{path} holds {len(tables)} tables ({', '.join(tables[:5])}{', …' if len(tables) > 5 else ''})" if tables else None


def restore(path: Path, url: URL) -> None:
    """Restore the dump at ``path`` into the (empty or absent) database file of ``url``."""
    Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    target = sqlite3.connect(url.database or "")
    try:
        source.backup(target, pages=4096)
    finally:
        target.close()
        source.close()

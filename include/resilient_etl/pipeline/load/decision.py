"""What happens to one staged row at load: loaded, pending or quarantined, with its enrichment status (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

RANK = {"live": 0, "cached": 1, "fallback": 2, "pending": 3}


def decide(row: Any) -> tuple[str, str]:
    """
    Return (outcome, detail) for a staged row and its two enrichments (a pure function).

    ``quarantined`` with the reason when the postcode or company does not exist, else ``loaded`` or
    ``pending`` with the enrichment status: the worse of the two sources (live < cached < fallback <
    pending). A missing enrichment counts as pending.
    """
    if row.pc_found is False:
        return "quarantined", "unknown_postcode"
    if row.co_found is False:
        return "quarantined", "unknown_company"
    status = max(row.pc_source or "pending", row.co_source or "pending", key=RANK.__getitem__)
    return ("pending" if status == "pending" else "loaded"), status


@dataclass
class Item:
    """A staged line a chunk holds (``row`` has its ``source_file`` and ``line_number``)."""

    row: Any


class Row(NamedTuple):
    """A staged row with its two enrichment answers (what :func:`decide` reads; a tuple: batches hold thousands)."""

    source_file: str
    line_number: int
    postcode: str
    company_number: str
    pc_found: bool | None
    pc_source: str | None
    co_found: bool | None
    co_source: str | None

    @classmethod
    def line(cls, source_file: str, line_number: int) -> Row:
        """A row known by its place alone (a chunk's line set aside or tried), its answers unread."""
        return cls(source_file, line_number, "", "", None, None, None, None)

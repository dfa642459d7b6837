"""
The rules the warehouse's catalog states for ``suppliers`` (widths, NOT NULL, CHECKs), checked over a chunk in one query.

A chunk that breaks one of them fails as a whole and would need savepoint trials to find the row;
checked first, set-based, its breakers are found in one read and quarantined with the rule they
break, and only what the database alone knows (a trigger, a unique index) is left to the trials.
Only rules the database enforces are checked: SQLite does not enforce widths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Connection, case, inspect, literal_column, or_, select
from sqlalchemy.exc import DBAPIError

from resilient_etl.pipeline.load.statements import COLUMNS, rows_select

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

log = logging.getLogger(__name__)

#: dialects whose CHECK expressions and NOT NULL the inspector reads, and whether they enforce widths
_DIALECTS = {"postgresql": True, "sqlite": False}
#: columns the loader itself fills, never from a row's data
_LOADER_COLUMNS = {"enrichment_status", "enrichment_as_of", "source_file", "source_line", "run_id", "loaded_at"}


@dataclass(frozen=True)
class Rule:
    """One rule of the catalog: what a breaking row is told, and the SQL true for such a row."""

    label: str
    broken: str  # SQL over the candidate rows, named as the columns of suppliers


def catalog_rules(conn: Connection, table: str = "suppliers") -> list[Rule]:
    """
    Return the rules the database states for ``table``, read from its catalog (not from this project's model).

    :param conn: a connection to the warehouse
    :param table: the table loaded
    """
    widths = _DIALECTS.get(conn.dialect.name)
    if widths is None:
        return []
    inspector = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    rules: list[Rule] = []
    for column in inspector.get_columns(table):
        name = column["name"]
        if name not in COLUMNS or name in _LOADER_COLUMNS:
            continue
        length = getattr(column["type"], "length", None)
        if widths and length:
            rules.append(Rule(f"{name} is longer than the column's {length} characters", f"char_length({quote(name)}) > {int(length)}"))
        if not column["nullable"]:
            rules.append(Rule(f"{name} is empty (the column is NOT NULL)", f"{quote(name)} IS NULL"))
    for check in inspector.get_check_constraints(table):
        # NOT (expr) is NULL, not true, for a row the CHECK lets through on a NULL: the same verdict as the database's
        shown = check["sqltext"] if len(check["sqltext"]) <= 160 else check["sqltext"][:157] + "..."
        rules.append(Rule(f"CHECK {check['name']} ({shown})", f"NOT ({check['sqltext']})"))
    return rules


def breakers(conn: Connection, rules: list[Rule], params: dict[str, Any]) -> dict[int, str] | None:
    """
    Return the lines of a chunk that break a rule, each with the first rule it breaks, from one read.

    Run under a savepoint: a CHECK expression the database cannot evaluate outside its table rolls
    back only this read, and ``None`` says the rules could not be checked (the trials find the rows).

    :param conn: the loader's connection, inside its transaction
    :param rules: from :func:`catalog_rules`
    :param params: the chunk's parameters for ``rows_select("range")``
    """
    if not rules:
        return {}
    rows = rows_select("range").subquery("suppliers")  # named as the table, so the CHECK expressions resolve
    conditions: list[ColumnElement[bool]] = [literal_column(f"({r.broken})", Boolean) for r in rules]
    query = (
        select(rows.c.source_line, case(*((c, r.label) for c, r in zip(conditions, rules, strict=True)), else_=None))
        .select_from(rows)
        .where(or_(*conditions))
    )
    try:
        with conn.begin_nested():
            return {line: label for line, label in conn.execute(query, params)}
    except DBAPIError as exc:
        log.warning("The catalog's rules for suppliers could not be checked (%s); bad rows are found by trials", type(exc.orig).__name__)
        return None


@dataclass
class Precheck:
    """
    The catalog's rules for one load, checked before each chunk from the first chunk that failed on.

    A clean load never reads the catalog nor pays for the check; once a chunk failed, the next ones
    are likely to hold bad rows too, and one read per chunk is far cheaper than trials.
    """

    rules: list[Rule] | None = None
    active: bool = False

    def arm(self, conn: Connection) -> bool:
        """Start checking (reading the rules on the first call); return whether there is anything to check."""
        if self.rules is None:
            self.rules = catalog_rules(conn)
            log.info("A chunk was refused: checking the catalog's %s rules for suppliers before each chunk from now on", len(self.rules))
        self.active = bool(self.rules)
        return self.active

    def set_aside(self, conn: Connection, params: dict[str, Any]) -> dict[int, str]:
        """
        Return the lines of a chunk that break a rule, each with why (none when the rules cannot be checked here).

        :param conn: the loader's connection
        :param params: the chunk's parameters for ``rows_select("range")``
        """
        broken = breakers(conn, self.rules or [], params)
        if broken is None:  # the rules cannot be read over rows here: stop trying for this load
            self.active = False
            return {}
        return {line: f"breaks a rule of the warehouse (checked before loading): {rule}" for line, rule in broken.items()}

"""Bad-row isolation decisions, with a fake database: which rows it rejects and how many tries it costs."""

from __future__ import annotations

import datetime as dt
import random
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import DBAPIError

from resilient_etl.pipeline.load.decision import Item
from resilient_etl.pipeline.load.isolation import MAX_GROUP, Isolation, group_size


class FakeIsolation(Isolation):
    """A database that refuses any statement holding one of ``bad`` lines, and records each try."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__(warehouse=None, conn=None, run_id="r", now=dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
        self.bad_lines = bad
        self.tries: list[list[int]] = []

    def attempt(self, items: list[Item]) -> DBAPIError | None:
        lines = [i.row.line_number for i in items]
        self.tries.append(lines)
        hit = [line for line in lines if line in self.bad_lines]
        return DBAPIError("INSERT", {}, ValueError(f"line {hit[0]}")) if hit else None


def upsert(iso: Isolation, chunk: list[Item]) -> tuple[list[Item], list[tuple[Item, DBAPIError]]]:
    """What the loader does with a chunk: one try, then isolation when it fails."""
    error = iso.attempt(chunk)
    return (chunk, []) if error is None else iso.run(chunk, error)


def items(n: int) -> list[Item]:
    return [Item(SimpleNamespace(source_file="f.csv", line_number=i)) for i in range(n)]


@pytest.mark.parametrize(("pool", "expected", "size"), [(500, 1, MAX_GROUP), (500, 5, MAX_GROUP), (40, 5, 4), (8, 5, 1), (1, 1, 1)])
def test_group_size_follows_generalized_binary_splitting(pool: int, expected: float, size: int) -> None:
    assert group_size(pool, expected) == size


@pytest.mark.parametrize("seed", range(20))
def test_isolation_rejects_exactly_the_bad_rows_each_after_a_try_of_its_own(seed: int) -> None:
    rng = random.Random(seed)
    bad = set(rng.sample(range(500), rng.randint(1, 12)))
    iso = FakeIsolation(bad)
    loaded, rejected = upsert(iso, items(500))
    assert sorted(i.row.line_number for i, _ in rejected) == sorted(bad)
    assert {i.row.line_number for i in loaded} == set(range(500)) - bad
    assert len(loaded) + len(rejected) == 500  # nothing lost, nothing twice
    for item, error in rejected:
        assert [item.row.line_number] in iso.tries  # never quarantined by inference alone
        assert str(error.orig) == f"line {item.row.line_number}"
    assert iso.bad == len(bad)


def test_isolation_costs_about_log2_tries_per_bad_row() -> None:
    """1 % bad rows over 10 chunks of 500: far fewer statements than a try per row."""
    rng = random.Random(7)
    iso = FakeIsolation(set())
    tries = 0
    for _ in range(10):
        iso.bad_lines = set(rng.sample(range(500), 5))
        iso.tries = []
        upsert(iso, items(500))
        tries += len(iso.tries)
    assert tries / 10 < 65  # 58.3 here: 1 + ~31 groups of 16 + ~5 halvings per bad row (was ~64 with sqrt groups)


def test_a_clean_chunk_is_one_statement() -> None:
    iso = FakeIsolation(set())
    loaded, rejected = upsert(iso, items(500))
    assert (len(loaded), rejected, len(iso.tries)) == (500, [], 1)


@pytest.mark.parametrize(("size", "bad"), [(24, 20), (24, 23), (40, 35), (9, 8)])
def test_a_bad_row_in_the_last_group_after_a_clean_one_is_tried_not_assumed_loaded(size: int, bad: int) -> None:
    """A pool left after a clean group is not the pool known to fail: it is tried (once it was counted loaded untried)."""
    iso = FakeIsolation({bad})
    loaded, rejected = upsert(iso, items(size))
    assert [i.row.line_number for i, _ in rejected] == [bad]
    assert bad not in {i.row.line_number for i in loaded}
    passed = [t for t in iso.tries if bad not in t]
    assert all(any(i.row.line_number in t for t in passed) for i in loaded)  # every loaded row was in a try that passed

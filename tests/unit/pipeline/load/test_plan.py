"""The load's plan: batches of lines that run on across files, chunks inside one file and one batch."""

from __future__ import annotations

from resilient_etl.pipeline.load.batches import Chunk, plan


def test_batches_of_lines_cut_into_chunks_the_last_of_each_batch_shorter() -> None:
    assert plan([("a.csv", 2, 301)], chunk_size=50, batch_size=120) == [
        [Chunk("a.csv", 2, 51), Chunk("a.csv", 52, 101), Chunk("a.csv", 102, 121)],
        [Chunk("a.csv", 122, 171), Chunk("a.csv", 172, 221), Chunk("a.csv", 222, 241)],
        [Chunk("a.csv", 242, 291), Chunk("a.csv", 292, 301)],
    ]


def test_a_batch_runs_on_into_the_next_file() -> None:
    assert plan([("a.csv", 2, 31), ("b.csv", 2, 61)], chunk_size=25, batch_size=50) == [
        [Chunk("a.csv", 2, 26), Chunk("a.csv", 27, 31), Chunk("b.csv", 2, 21)],
        [Chunk("b.csv", 22, 46), Chunk("b.csv", 47, 61)],
    ]


def test_every_line_in_exactly_one_chunk() -> None:
    spans = [("a.csv", 2, 1000), ("b.csv", 5, 17), ("c.csv", 2, 2)]
    for chunk_size, batch_size in ((1, 1), (7, 30), (100, 500), (1000, 10)):
        batches = plan(spans, chunk_size=chunk_size, batch_size=batch_size)
        assert all(sum(c.last_line - c.first_line + 1 for c in b) <= batch_size for b in batches)
        chunks = [c for batch in batches for c in batch]
        covered = [(c.source_file, line) for c in chunks for line in range(c.first_line, c.last_line + 1)]
        assert covered == [(f, line) for f, lo, hi in spans for line in range(lo, hi + 1)]
        assert all(c.last_line - c.first_line < chunk_size for c in chunks)

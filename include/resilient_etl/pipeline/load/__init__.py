"""
Load: upsert the run's enriched rows into ``suppliers`` in batches.

* Each batch is one transaction on one connection the loader owns; inside it, each chunk runs under
  a savepoint (``begin_nested``) as one ``INSERT … SELECT … ON CONFLICT`` over a range of lines of the
  staged rows and their enrichment (the enrichment status computed in SQL): the rows never leave the
  database; no row is read before it loads. Keys the APIs do not know are quarantined first, found
  from the answers.
* A chunk that fails on a row's data (constraint, bad or overlong value) is rolled back to its
  savepoint; from then on the load reads the catalog's rules for ``suppliers`` (widths, NOT NULL,
  CHECKs) and sets the rows breaking one aside, one query from the chunk to the batch's end, with the rule named
  (:mod:`.rules`). What only the database knows (a trigger, a unique index) is isolated by trials: the
  same statement over groups of lines sized by generalized binary splitting, then over halves of a
  failing group, each under a savepoint (:mod:`.isolation`). Rejected rows go to quarantine with the
  reason, the good ones load.
* A chunk's checkpoint row (``etl_checkpoints``) commits with the chunk's data and is the record of
  what loaded (no status is written per loaded row: :func:`.statements.row_statuses` derives it), so a
  retried or cleared task resumes after the last committed chunk, exactly once (ADR 0014).
* A critical error (connection lost, deadlock, disk full) rolls the whole batch back (no reader ever
  sees half of it) and is raised typed; transient ones are retried with the database policy first.
* More rejected rows in a batch than ``max_quarantine_share`` fails the batch.
"""

from __future__ import annotations

from resilient_etl.pipeline.load.batches import BatchResult, load
from resilient_etl.pipeline.load.decision import decide

__all__ = ["BatchResult", "decide", "load"]

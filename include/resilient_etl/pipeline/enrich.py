"""
Enrich: look the run's distinct postcodes and company numbers up, live when the API answers, else
from fallbacks, and record per key how it was answered in ``run_enrichment``.

Per key, ``run_enrichment`` holds the supplier columns derived from the answer. Fallback order:
postcodes -> earlier live answers (``postcode_cache``) -> the bundled reference
extract -> ``pending``; companies -> earlier answers (``company_cache``, stale allowed, its age kept)
-> ``pending``. An open breaker or a transient failure that outlived its retries switches a batch to
the fallback; it does not fail the task. Too large a non-live share does (a classified failure).

Answers are committed a second's worth at a time, so a retried task only looks up keys that have no
live answer for this run yet (and a killed one loses at most that second's).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, func, select

from resilient_etl.exceptions import ApiError, BreakerOpenError, FallbackThresholdError
from resilient_etl.hooks.identifiers import normalise_postcode
from resilient_etl.hooks.warehouse.schema import as_utc, company_cache, postcode_cache, run_enrichment, staged_rows
from resilient_etl.pipeline.columns import company_columns, postcode_columns
from resilient_etl.pipeline.staging import refresh_statistics
from resilient_etl.resilience.ratelimit import quota_eta
from resilient_etl.resilience.retry import is_transient

if TYPE_CHECKING:
    from resilient_etl.hooks.companies_house import CompaniesHouseHook
    from resilient_etl.hooks.postcodes import PostcodesIoHook
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.pipeline.overrides import Override

log = logging.getLogger(__name__)
# Answers are saved a second's worth at a time (at most 1,000): a kill loses at most that many answers,
# and a fast API is not slowed by a save every few requests (a save every 25 companies cost a third of the
# stage against the sandbox: 17 ms a save, 2.5 ms a request; a save per bulk of 100 postcodes, half of it)
ANSWER_COMMIT_SECONDS, ANSWER_COMMIT_MAX = 1.0, 1000
_ENRICHMENT_COLUMNS = [c.name for c in run_enrichment.columns if c.name.startswith(("pc_", "co_"))]
SOURCES = ("live", "cached", "fallback", "pending")


def keys_to_enrich(warehouse: WarehouseHook, *, run_id: str, kind: str) -> tuple[list[str], int]:
    """Return (the run's keys with no live answer yet, how many already have one)."""
    s, e = staged_rows, run_enrichment
    key = s.c.postcode if kind == "postcode" else s.c.company_number
    with warehouse.begin() as conn:
        rows = conn.execute(
            select(key, e.c.source)
            .distinct()
            .select_from(s.outerjoin(e, and_(e.c.run_id == run_id, e.c.kind == kind, e.c.lookup_key == key)))
            .where(s.c.run_id == run_id, s.c.status == "valid")
        ).all()
    todo = sorted(r[0] for r in rows if r[1] != "live")
    return todo, len(rows) - len(todo)


def _todo(warehouse: WarehouseHook, *, run_id: str, kind: str) -> tuple[list[str], int]:
    """Return :func:`keys_to_enrich` and log what an earlier try left: only live answers are kept."""
    todo, resumed = keys_to_enrich(warehouse, run_id=run_id, kind=kind)
    if resumed:
        log.info(
            "%s lookups: %s already answered live by an earlier try, %s to look up (fallback and pending answers are tried again)",
            kind,
            resumed,
            len(todo),
        )
    return todo, resumed


def _save(
    warehouse: WarehouseHook,
    *,
    run_id: str,
    kind: str,
    answers: dict[str, tuple[str, Any, dt.datetime | None]],
    cache: Table | None = None,
    cache_key: str = "",
) -> None:
    """
    Write answers ``{key: (source, result or None, as_of)}``; live ones also refresh the cache.

    The cache keeps the API's whole object; ``run_enrichment`` keeps only the supplier columns
    derived from it (typed), which the load copies inside the database.
    """
    now = dt.datetime.now(dt.UTC)
    to_columns = postcode_columns if kind == "postcode" else company_columns
    rows = [
        {
            "run_id": run_id,
            "kind": kind,
            "lookup_key": k,
            "source": source,
            "found": None if source == "pending" else result is not None,
            "as_of": as_of,
            **{c: None for c in _ENRICHMENT_COLUMNS},
            **(to_columns(result) if result is not None else {}),
        }
        for k, (source, result, as_of) in answers.items()
    ]
    live = [
        {cache_key: k, "found": result is not None, "result": json.dumps(result) if result is not None else None, "fetched_at": now, "run_id": run_id}
        for k, (source, result, _) in answers.items()
        if source == "live"
    ]
    with warehouse.begin() as conn:
        warehouse.upsert(conn, run_enrichment, rows, ["run_id", "kind", "lookup_key"])
        if cache is not None and live:
            warehouse.upsert(conn, cache, live, [cache_key])


CACHE_READ_BATCH = 500  # keys per IN (...) when reading the cache: under every dialect's parameter limit


def _cached(
    warehouse: WarehouseHook, cache: Table, key_col: str, keys: Iterable[str], *, since: dt.datetime | None = None
) -> dict[str, tuple[Any, dt.datetime]]:
    """
    Return the cache's answers for ``keys``: ``{key: (result or None when not found, fetched_at)}``.

    :param since: only answers fetched at or after this time (None: any age, as the fallbacks take them)
    """
    keys = list(keys)
    c = cache.c
    out: dict[str, tuple[Any, dt.datetime]] = {}
    with warehouse.begin() as conn:
        for start in range(0, len(keys), CACHE_READ_BATCH):
            query = select(c[key_col], c.found, c.result, c.fetched_at).where(c[key_col].in_(keys[start : start + CACHE_READ_BATCH]))
            if since is not None:
                query = query.where(c.fetched_at >= since)
            out.update({r[0]: (json.loads(r.result) if r.found else None, as_utc(r.fetched_at)) for r in conn.execute(query)})
    return out


def _fresh_from_cache(
    warehouse: WarehouseHook, *, run_id: str, kind: str, todo: list[str], ttl_hours: float, now: dt.datetime | None = None
) -> list[str]:
    """
    Answer the keys whose cached answer is younger than ``ttl_hours`` from the cache (source ``cached``,
    its fetch time as ``as_of``) and return the keys still to look up live.
    """
    if ttl_hours <= 0 or not todo:
        return todo
    cache, key_col = (postcode_cache, "postcode") if kind == "postcode" else (company_cache, "company_number")
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=ttl_hours)
    fresh = _cached(warehouse, cache, key_col, todo, since=since)
    if fresh:
        _save(warehouse, run_id=run_id, kind=kind, answers={k: ("cached", result, at) for k, (result, at) in fresh.items()})
        log.info(
            "%s lookups: %s answered from the cache (fetched within %s h), %s to look up live", kind, len(fresh), ttl_hours, len(todo) - len(fresh)
        )
    return [k for k in todo if k not in fresh]


def fresh_cached_count(warehouse: WarehouseHook, *, run_id: str, kind: str, ttl_hours: float, now: dt.datetime | None = None) -> int:
    """Return how many of the run's ``kind`` keys were answered from a cached answer within the TTL (as good as live)."""
    if ttl_hours <= 0:
        return 0
    e = run_enrichment
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=ttl_hours)
    with warehouse.begin() as conn:
        query = select(func.count()).where(e.c.run_id == run_id, e.c.kind == kind, e.c.source == "cached", e.c.as_of >= since)
        return int(conn.execute(query).scalar_one())


def enrich_nothing_live(warehouse: WarehouseHook, *, run_id: str, kind: str, suspension: Override) -> dict[str, Any]:
    """
    Answer every key of the run ``pending`` without calling the API: live enrichment is suspended.

    A declared outage (``resilient-etl pipeline enrichment suspend``) loads the rows now and leaves
    their enrichment to the backlog once enrichment resumes; the non-live threshold does not apply,
    because a person chose this.

    :param suspension: the override in force (who suspended it, why, until when)
    """
    todo, resumed = keys_to_enrich(warehouse, run_id=run_id, kind=kind)
    _save(warehouse, run_id=run_id, kind=kind, answers={k: ("pending", None, None) for k in todo})
    summary = {
        "looked_up": 0,
        "already_live": resumed,
        "by_source": source_counts(warehouse, run_id=run_id, kind=kind),
        "suspended": {"override": suspension.id, "by": suspension.by_user, "reason": suspension.reason},
    }
    log.warning(
        "%s enrichment suspended by override #%s (%s: %s): %s keys loaded as pending, re-enriched once it resumes",
        kind,
        suspension.id,
        suspension.by_user,
        suspension.reason,
        len(todo),
    )
    return summary


def is_fallback_trigger(exc: BaseException) -> bool:
    """An open breaker, or a transient API failure that outlived its retries; never a permanent error."""
    return isinstance(exc, BreakerOpenError) or (isinstance(exc, ApiError) and is_transient(exc))


def enrich_postcodes(
    warehouse: WarehouseHook,
    hook: PostcodesIoHook,
    *,
    run_id: str,
    reference: dict[str, dict[str, Any]] | None = None,
    max_non_live_share: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
    cache_ttl_hours: float = 0.0,
) -> dict[str, Any]:
    """
    Bulk-look-up the postcodes of the run's valid rows (``hook.bulk_size`` per request).

    :param warehouse: the warehouse hook
    :param hook: the postcodes.io hook (its circuit breaker guards every request)
    :param run_id: the Airflow run id
    :param reference: the bundled reference extract ``{postcode: fields}`` (None: no such fallback)
    :param max_non_live_share: fail when more of the run's postcodes than this are not live
    :param on_progress: called with (keys done, keys to do) after each batch (a :class:`~resilient_etl.pipeline.progress.ProgressLog`)
    :param cache_ttl_hours: use cached answers fetched within this many hours instead of calling the API (0: never)
    :raises FallbackThresholdError: the non-live share is over ``max_non_live_share``
    """
    todo, resumed = _todo(warehouse, run_id=run_id, kind="postcode")
    todo = _fresh_from_cache(warehouse, run_id=run_id, kind="postcode", todo=todo, ttl_hours=cache_ttl_hours)
    tally = _Tally()
    unsaved = _Unsaved(warehouse, run_id, "postcode", postcode_cache, "postcode", lambda keys: _postcode_fallback(warehouse, keys, reference or {}))
    for start in range(0, len(todo), hook.bulk_size):
        batch = todo[start : start + hook.bulk_size]
        try:
            results = hook.bulk_lookup_batch(batch)
            unsaved.answered({k: ("live", v, dt.datetime.now(dt.UTC)) for k, v in results.items()})
        except (BreakerOpenError, ApiError) as exc:
            if not is_fallback_trigger(exc):
                raise
            tally.fell_back(exc)
            unsaved.failed(batch)
        if on_progress is not None:
            on_progress(start + len(batch), len(todo))
    unsaved.save()
    return _finish(warehouse, hook, _Try(run_id, "postcode", todo, resumed, on_progress, cache_ttl_hours), tally, threshold=max_non_live_share)


def _postcode_fallback(warehouse: WarehouseHook, batch: list[str], reference: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Any, Any]]:
    cached = _cached(warehouse, postcode_cache, "postcode", batch)
    answers: dict[str, tuple[str, Any, Any]] = {}
    for key in batch:
        if key in cached:
            answers[key] = ("cached", cached[key][0], cached[key][1])
        elif normalise_postcode(key) in reference:
            answers[key] = ("fallback", reference[normalise_postcode(key)], None)
        else:
            answers[key] = ("pending", None, None)
    return answers


def enrich_companies(
    warehouse: WarehouseHook,
    hook: CompaniesHouseHook,
    *,
    run_id: str,
    max_non_live_share: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
    cache_ttl_hours: float = 0.0,
) -> dict[str, Any]:
    """
    Fetch the company profile of each distinct company number of the run's valid rows.

    :param warehouse: the warehouse hook
    :param hook: the Companies House hook
    :param run_id: the Airflow run id
    :param max_non_live_share: fail when more of the run's companies than this are not live
    :param on_progress: called with (keys done, keys to do) after each lookup (a :class:`~resilient_etl.pipeline.progress.ProgressLog`)
    :param cache_ttl_hours: use cached answers fetched within this many hours instead of calling the API (0: never)
    :raises FallbackThresholdError: the non-live share is over ``max_non_live_share``
    """
    todo, resumed = _todo(warehouse, run_id=run_id, kind="company")
    todo = _fresh_from_cache(warehouse, run_id=run_id, kind="company", todo=todo, ttl_hours=cache_ttl_hours)
    tally = _Tally()
    unsaved = _Unsaved(warehouse, run_id, "company", company_cache, "company_number", lambda keys: _company_fallback(warehouse, keys))
    eta: float | None = None
    for done, number in enumerate(todo, start=1):
        asked, waited = time.monotonic(), hook.pacer.waited if hook.pacer else 0.0
        try:
            unsaved.answered({number: ("live", hook.get_company(number), dt.datetime.now(dt.UTC))})
        except (BreakerOpenError, ApiError) as exc:
            if not is_fallback_trigger(exc):
                raise
            tally.fell_back(exc)
            unsaved.failed([number])
        if done == min(2, len(todo)):  # the second: the first request's time is mostly the session's setup
            took = time.monotonic() - asked - ((hook.pacer.waited if hook.pacer else 0.0) - waited)
            eta = _log_quota_eta(hook, len(todo) - done, took)
        if on_progress is not None:
            on_progress(done, len(todo))
    unsaved.save()
    summary = _finish(warehouse, hook, _Try(run_id, "company", todo, resumed, on_progress, cache_ttl_hours), tally, threshold=max_non_live_share)
    return {**summary, "eta_s": None if eta is None else round(eta, 1)}


def _log_quota_eta(hook: CompaniesHouseHook, remaining: int, request_seconds: float) -> float | None:
    """Say, after the second answer (its headers tell the quota, its time a request's), how long the rest takes; return it."""
    status = hook.last_rate_limit
    # unpaced, requests go as fast as answers come until the window is spent: a burst with no reserve
    eta = quota_eta(remaining, status, time.time(), hook.pacer.burst_reserve if hook.pacer else 0, request_seconds)
    if eta is None or status is None:
        log.info("companies: %s more to look up; no quota headers yet, so no estimate", remaining)
        return None
    log.info(
        "companies: %s more to look up at the quota (%s per %s, %s left in this window): about %.0f s",
        remaining,
        status.limit,
        status.window,
        status.remain,
        eta,
    )
    return eta


def _company_fallback(warehouse: WarehouseHook, numbers: list[str]) -> dict[str, tuple[str, Any, Any]]:
    cached = _cached(warehouse, company_cache, "company_number", numbers)
    return {n: ("cached", *cached[n]) if n in cached else ("pending", None, None) for n in numbers}


def source_counts(warehouse: WarehouseHook, *, run_id: str, kind: str) -> dict[str, int]:
    """Return how many of the run's keys of ``kind`` were answered from each source."""
    e = run_enrichment
    with warehouse.begin() as conn:
        rows = conn.execute(select(e.c.source, func.count()).where(e.c.run_id == run_id, e.c.kind == kind).group_by(e.c.source)).all()
    return {source: 0 for source in SOURCES} | dict(rows)


@dataclass
class _Unsaved:
    """
    Answers of one try not written yet: saved every :data:`ANSWER_COMMIT_SECONDS` or :data:`ANSWER_COMMIT_MAX` answers.

    Keys whose lookup failed are answered from ``fallback`` (cache, reference, pending) when saved.
    """

    warehouse: WarehouseHook
    run_id: str
    kind: str
    cache: Table
    cache_key: str
    fallback: Callable[[list[str]], dict[str, tuple[str, Any, Any]]]
    answers: dict[str, tuple[str, Any, Any]] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)
    saved_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.saved_at = time.monotonic()

    def answered(self, answers: dict[str, tuple[str, Any, Any]]) -> None:
        """Add live answers ``{key: (source, result or None, as_of)}``; save when due."""
        self.answers.update(answers)
        self._save_when_due()

    def failed(self, keys: list[str]) -> None:
        """Add keys the API did not answer (their fallbacks are read when saved); save when due."""
        self.unanswered.extend(keys)
        self._save_when_due()

    def _save_when_due(self) -> None:
        if len(self.answers) + len(self.unanswered) >= ANSWER_COMMIT_MAX or time.monotonic() - self.saved_at >= ANSWER_COMMIT_SECONDS:
            self.save()

    def save(self) -> None:
        """Write what is unsaved (nothing when nothing is)."""
        if self.unanswered:
            self.answers.update(self.fallback(self.unanswered))
        if self.answers:
            _save(self.warehouse, run_id=self.run_id, kind=self.kind, answers=self.answers, cache=self.cache, cache_key=self.cache_key)
        self.answers, self.unanswered, self.saved_at = {}, [], time.monotonic()


@dataclass
class _Tally:
    """Why lookups of one try fell back, and the last refusal of an open breaker (its error says when it probes next)."""

    reasons: Counter[str] = field(default_factory=Counter)
    refused: BreakerOpenError | None = None

    def fell_back(self, exc: BaseException) -> None:
        """Count a lookup answered from the fallbacks because of ``exc``."""
        self.reasons[type(exc).__name__] += 1
        if isinstance(exc, BreakerOpenError):
            self.refused = exc


@dataclass(frozen=True)
class _Try:
    """What one try of an enrichment set out to do: the keys of ``kind`` without a live answer yet."""

    run_id: str
    kind: str
    todo: list[str]
    resumed: int
    on_progress: Callable[[int, int], None] | None
    cache_ttl_hours: float = 0.0


def _finish(
    warehouse: WarehouseHook, hook: PostcodesIoHook | CompaniesHouseHook, attempt: _Try, tally: _Tally, *, threshold: float
) -> dict[str, Any]:
    """
    End an enrichment: report progress when nothing was to do, write the breaker's successes, summarise
    the run's answers of the try's kind; fail when more than ``threshold`` of them are not live.
    """
    if attempt.on_progress is not None and not attempt.todo:
        attempt.on_progress(0, 0)
    if hook.breaker is not None:
        hook.breaker.flush()
    run_id, kind, looked_up, resumed = attempt.run_id, attempt.kind, len(attempt.todo), attempt.resumed
    if looked_up:
        refresh_statistics(warehouse, [run_enrichment])
    reasons, refused = tally.reasons, tally.refused
    counts = source_counts(warehouse, run_id=run_id, kind=kind)
    total = sum(counts.values())
    fresh = fresh_cached_count(warehouse, run_id=run_id, kind=kind, ttl_hours=attempt.cache_ttl_hours)
    # an answer from the cache within its TTL is as good as a live one: only fallbacks count against the run
    non_live = total - counts["live"] - fresh
    share = non_live / total if total else 0.0
    summary = {
        "looked_up": looked_up,
        "already_live": resumed,
        "by_source": counts,
        "cached_within_ttl": fresh,
        "non_live_share": round(share, 4),
        "fallback_reasons": dict(reasons),
    }
    log.info("%s enrichment: %s", kind, summary)
    if share > threshold:
        raise FallbackThresholdError(
            f"{non_live} of {total} {kind} lookups ({share:.0%}) came from fallbacks, over the {threshold:.0%} allowed",
            source=kind,
            non_live_share=share,
            threshold=threshold,
            breaker=refused.breaker if refused else None,
            retry_at=refused.retry_at if refused else None,
        )
    return summary

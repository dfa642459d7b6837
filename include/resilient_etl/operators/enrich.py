"""Operators enriching staged suppliers from postcodes.io and Companies House, behind circuit breakers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilient_etl.config.models import RetryPolicy
from resilient_etl.operators.base import WarehouseOperator
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.progress import ProgressLog

if TYPE_CHECKING:
    from resilient_etl.config import ResilienceConfig
    from resilient_etl.config.models import BreakerPolicy
    from resilient_etl.resilience.breaker import SharedCircuitBreaker
    from resilient_etl.resilience.stores.base import SharedStore


@dataclass(frozen=True)
class ApiSettings:
    """
    How one API is called: connection, timeout per request, in-task retries, circuit breaker.

    :param conn_id: the Airflow connection
    :param timeout: seconds per request
    :param retry_policy: in-task retries of transient failures
    :param breaker_policy: its circuit breaker (None: none)
    """

    conn_id: str
    timeout: float
    retry_policy: RetryPolicy | None = None
    breaker_policy: BreakerPolicy | None = None

    @classmethod
    def from_config(cls, cfg: ResilienceConfig, api: str) -> ApiSettings:
        """Return the settings of ``api`` (``postcodes_io`` or ``companies_house``) from the configuration."""
        section = getattr(cfg.apis, api)
        return cls(
            conn_id=section.conn_id, timeout=section.timeout_seconds, retry_policy=cfg.retry.policy(api), breaker_policy=cfg.breakers.policy(api)
        )


class ApiEnrichmentOperator(WarehouseOperator):
    """
    What the API-calling operators share: retries, a shared circuit breaker, the fallback tolerance.

    :param timeout: seconds per request
    :param retry_policy: how transient API failures are retried inside the task
    :param breaker_policy: the API's circuit breaker (None: no breaker)
    :param shared_store: where breaker state and pacing are shared: ``auto`` (Redis when
        ``redis_conn_id`` exists), ``redis`` or ``sql``
    :param redis_conn_id: the Redis connection for shared state
    :param max_non_live_share: fail the task when more of the run's lookups than this come from fallbacks
    :param progress_seconds: the longest silence between two progress lines
    :param cache_ttl_hours: answers fetched within this many hours are used again without calling the API (0: never)
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        retry_policy: RetryPolicy | None = None,
        breaker_policy: BreakerPolicy | None = None,
        shared_store: str = "auto",
        redis_conn_id: str = "breaker_store",
        max_non_live_share: float = 1.0,
        progress_seconds: float = 30.0,
        cache_ttl_hours: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.progress_seconds = progress_seconds
        self.cache_ttl_hours = cache_ttl_hours
        self.timeout = timeout
        self.api_retry_policy = retry_policy
        self.breaker_policy = breaker_policy
        self.shared_store = shared_store
        self.redis_conn_id = redis_conn_id
        self.max_non_live_share = max_non_live_share
        self._store: SharedStore | None = None

    def progress(self, context: Any, label: str, *, waited: Callable[[], float] | None = None) -> ProgressLog:
        """
        Return the progress reporter of this try: log lines every 30 s (done/total, rate, ETA, quota
        waits), each mirrored into the ``task_state_store``.

        The answers themselves are committed to ``run_enrichment`` batch by batch (that is what a retry
        resumes from); the store shows how far the task got, in the UI, and across tries.

        :param label: what is looked up (``companies``, ``postcodes``)
        :param waited: seconds spent waiting for quota so far
        """
        from resilient_etl.pipeline.checkpoints import TaskProgress

        marker = TaskProgress(context)
        if context["params"].get("full_refresh"):
            marker.clear()
        elif (earlier := marker.previous()) is not None:
            # What is really looked up again (the keys without a live answer) is logged by the pipeline.
            self.log.info("An earlier try got to %s of %s lookups", earlier.get("done"), earlier.get("total"))
        return ProgressLog(label, every_seconds=self.progress_seconds, waited=waited, on_report=lambda values: marker.save(**values))

    def on_kill(self) -> None:
        """End the task's waits (quota pacing, retry backoff) now: Airflow calls this on SIGTERM."""
        from resilient_etl.resilience.stopping import request_stop

        self.log.warning("Stop requested: ending the waits for quota and retries")
        request_stop()

    def suspended(self, context: Any, kind: str) -> dict[str, Any] | None:
        """Return the summary of a try that loads every key as ``pending`` because live enrichment is suspended, else None."""
        from resilient_etl.pipeline.enrich import enrich_nothing_live
        from resilient_etl.pipeline.overrides import enrichment_suspension

        with self.warehouse.begin() as conn:
            suspension = enrichment_suspension(conn)
        if suspension is None:
            return None
        return enrich_nothing_live(self.warehouse, run_id=self.run_id(context), kind=kind, suspension=suspension)

    def shared(self) -> SharedStore:
        """Return the store this operator shares breaker state and pacing through (one per task)."""
        from resilient_etl.hooks.shared_state import shared_store

        if self._store is None:
            self._store = shared_store(self.shared_store, warehouse=self.warehouse, redis_conn_id=self.redis_conn_id)
        return self._store

    def breaker(self, policy: BreakerPolicy | None = None) -> SharedCircuitBreaker | bool:
        """Build the shared circuit breaker for ``policy`` (default: this operator's), recording its events; False: none."""
        from resilient_etl.hooks.shared_state import BreakerEventRecorder
        from resilient_etl.resilience.breaker import SharedCircuitBreaker

        policy = policy or self.breaker_policy
        if policy is None:
            return False
        return SharedCircuitBreaker(policy, self.shared(), listeners=[BreakerEventRecorder(self.warehouse)])


class EnrichPostcodesOperator(ApiEnrichmentOperator):
    """
    Bulk-look-up the postcodes of the run's valid rows; fall back to the cache and the reference extract.

    :param postcodes_io_conn_id: the postcodes.io connection
    :param bulk_size: postcodes per request (at most 100)
    :param reference_path: the reference extract used when postcodes.io and the cache have nothing
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "postcodes_io_conn_id")

    def __init__(
        self, *, postcodes_io_conn_id: str = "postcodes_io_default", bulk_size: int = 100, reference_path: str | Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.postcodes_io_conn_id = postcodes_io_conn_id
        self.bulk_size = bulk_size
        self.reference_path = str(reference_path) if reference_path else None

    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here: the HTTP provider costs ~0.2 s and DAG parsing never needs it.
        from resilient_etl.hooks.postcodes import PostcodesIoHook
        from resilient_etl.pipeline.reference import default_reference_path, load_postcode_reference

        if (summary := self.suspended(context, "postcode")) is not None:
            return summary
        hook = PostcodesIoHook(
            self.postcodes_io_conn_id, timeout=self.timeout, bulk_size=self.bulk_size, retry_policy=self.api_retry_policy, breaker=self.breaker()
        )
        progress = self.progress(context, "postcodes")
        try:
            return enrich_postcodes(
                self.warehouse,
                hook,
                run_id=self.run_id(context),
                reference=load_postcode_reference(self.reference_path or str(default_reference_path())),
                max_non_live_share=self.max_non_live_share,
                on_progress=progress,
                cache_ttl_hours=self.cache_ttl_hours,
            )
        finally:
            hook.close()


class EnrichCompaniesOperator(ApiEnrichmentOperator):
    """
    Fetch the Companies House profile of each company of the run's valid rows; fall back to the cache.

    :param companies_house_conn_id: the Companies House connection (password = API key)
    :param pace: pace calls by the quota, shared with every worker using the same key
    :param burst_reserve: burst each quota window down to this many calls, then pace them; None spreads
        each window evenly
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "companies_house_conn_id")

    def __init__(
        self, *, companies_house_conn_id: str = "companies_house_default", pace: bool = True, burst_reserve: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.companies_house_conn_id = companies_house_conn_id
        self.pace = pace
        self.burst_reserve = burst_reserve

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.hooks.companies_house import CompaniesHouseHook
        from resilient_etl.resilience.stores.base import describe

        if (summary := self.suspended(context, "company")) is not None:
            return summary
        store = self.shared() if self.pace else None
        mode = "spread" if self.burst_reserve is None else f"burst down to {self.burst_reserve} per window"
        self.log.info("Quota pacing: %s", f"{describe(store)}, {mode}" if store else "off")
        hook = CompaniesHouseHook(
            self.companies_house_conn_id,
            timeout=self.timeout,
            retry_policy=self.api_retry_policy,
            pacing_store=store,
            burst_reserve=self.burst_reserve,
            breaker=self.breaker(),
        )
        progress = self.progress(context, "companies", waited=lambda: hook.pacer.waited if hook.pacer else 0.0)
        try:
            return enrich_companies(
                self.warehouse,
                hook,
                run_id=self.run_id(context),
                max_non_live_share=self.max_non_live_share,
                on_progress=progress,
                cache_ttl_hours=self.cache_ttl_hours,
            )
        finally:
            hook.close()

"""Operators enriching staged suppliers from postcodes.io and Companies House."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resilient_etl.operators.base import WarehouseOperator
from resilient_etl.resilience.retry import RetryPolicy
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes


class EnrichPostcodesOperator(WarehouseOperator):
    """
    Bulk-look-up the postcodes of the run's valid rows and cache the answers.

    :param postcodes_io_conn_id: the postcodes.io connection
    :param timeout: seconds per request
    :param bulk_size: postcodes per request (at most 100)
    :param retry_policy: how transient API failures are retried inside the task
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "postcodes_io_conn_id")

    def __init__(
        self,
        *,
        postcodes_io_conn_id: str = "postcodes_io_default",
        timeout: float = 10.0,
        bulk_size: int = 100,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postcodes_io_conn_id = postcodes_io_conn_id
        self.timeout = timeout
        self.bulk_size = bulk_size
        self.api_retry_policy = retry_policy

    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here: the HTTP provider costs ~0.2 s and DAG parsing never needs it.
        from resilient_etl.hooks.postcodes import PostcodesIoHook

        hook = PostcodesIoHook(
            self.postcodes_io_conn_id, timeout=self.timeout, bulk_size=self.bulk_size, retry_policy=self.api_retry_policy
        )
        try:
            return enrich_postcodes(self.warehouse, hook, run_id=self.run_id(context))
        finally:
            hook.close()


class EnrichCompaniesOperator(WarehouseOperator):
    """
    Fetch the Companies House profile of each company of the run's valid rows and cache it.

    :param companies_house_conn_id: the Companies House connection (password = API key)
    :param timeout: seconds per request
    :param retry_policy: how transient API failures (and 429s) are retried inside the task
    :param pace: spread calls over the quota window, shared with every worker using the same key
    :param shared_store: where pacing is shared: ``auto`` (Redis when ``redis_conn_id`` exists), ``redis``, ``sql``
    :param redis_conn_id: the Redis connection for shared state
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "companies_house_conn_id")

    def __init__(
        self,
        *,
        companies_house_conn_id: str = "companies_house_default",
        timeout: float = 10.0,
        retry_policy: RetryPolicy | None = None,
        pace: bool = True,
        shared_store: str = "auto",
        redis_conn_id: str = "breaker_store",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.companies_house_conn_id = companies_house_conn_id
        self.timeout = timeout
        self.api_retry_policy = retry_policy
        self.pace = pace
        self.shared_store = shared_store
        self.redis_conn_id = redis_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.hooks.companies_house import CompaniesHouseHook
        from resilient_etl.resilience.storage import pacing_store

        store = (
            pacing_store(self.shared_store, warehouse=self.warehouse, redis_conn_id=self.redis_conn_id) if self.pace else None
        )
        self.log.info("Quota pacing: %s", type(store).__name__ if store else "off")
        hook = CompaniesHouseHook(
            self.companies_house_conn_id, timeout=self.timeout, retry_policy=self.api_retry_policy, pacing_store=store
        )
        try:
            return enrich_companies(self.warehouse, hook, run_id=self.run_id(context))
        finally:
            hook.close()

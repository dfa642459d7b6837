"""Operators enriching staged suppliers from postcodes.io and Companies House."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resilient_etl.operators.base import WarehouseOperator
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes


class EnrichPostcodesOperator(WarehouseOperator):
    """
    Bulk-look-up the postcodes of the run's valid rows and cache the answers.

    :param postcodes_io_conn_id: the postcodes.io connection
    :param timeout: seconds per request
    :param bulk_size: postcodes per request (at most 100)
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "postcodes_io_conn_id")

    def __init__(
        self, *, postcodes_io_conn_id: str = "postcodes_io_default", timeout: float = 10.0, bulk_size: int = 100, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.postcodes_io_conn_id = postcodes_io_conn_id
        self.timeout = timeout
        self.bulk_size = bulk_size

    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here: the HTTP provider costs ~0.2 s and DAG parsing never needs it.
        from resilient_etl.hooks.postcodes import PostcodesIoHook

        hook = PostcodesIoHook(self.postcodes_io_conn_id, timeout=self.timeout, bulk_size=self.bulk_size)
        try:
            return enrich_postcodes(self.warehouse, hook, run_id=self.run_id(context))
        finally:
            hook.close()


class EnrichCompaniesOperator(WarehouseOperator):
    """
    Fetch the Companies House profile of each company of the run's valid rows and cache it.

    :param companies_house_conn_id: the Companies House connection (password = API key)
    :param timeout: seconds per request
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "companies_house_conn_id")

    def __init__(
        self, *, companies_house_conn_id: str = "companies_house_default", timeout: float = 10.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.companies_house_conn_id = companies_house_conn_id
        self.timeout = timeout

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.hooks.companies_house import CompaniesHouseHook

        hook = CompaniesHouseHook(self.companies_house_conn_id, timeout=self.timeout)
        try:
            return enrich_companies(self.warehouse, hook, run_id=self.run_id(context))
        finally:
            hook.close()

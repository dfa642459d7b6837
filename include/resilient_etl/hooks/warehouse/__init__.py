"""The SQL warehouse: the hook, its tables (:mod:`.schema`) and one module per dialect (:mod:`.dialects`)."""

from __future__ import annotations

from resilient_etl.hooks.warehouse.hook import WarehouseHook, url_for_connection

__all__ = ["WarehouseHook", "url_for_connection"]

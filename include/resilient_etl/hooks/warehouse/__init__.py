"""
The SQL warehouse: the hook (:mod:`.hook`), its tables (:mod:`.schema`) and one module per dialect (:mod:`.dialects`).

``WarehouseHook`` is imported on first use: DAG files and modules that only need the tables
(``from resilient_etl.hooks.warehouse.schema import …``) do not pay for the hook and the dialects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse.hook import WarehouseHook, url_for_connection

__all__ = ["WarehouseHook", "url_for_connection"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from resilient_etl.hooks.warehouse import hook

        return getattr(hook, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

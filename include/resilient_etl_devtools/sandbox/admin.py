"""The fault-control admin API shared by both sandbox servers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from resilient_etl_devtools.sandbox.faults import FaultRegistry, FaultSpec


def admin_router(registry: FaultRegistry) -> APIRouter:
    """Build ``/__sandbox/faults`` routes over ``registry``."""
    router = APIRouter(prefix="/__sandbox")

    @router.get("/faults")
    def list_faults() -> dict[str, Any]:
        return registry.snapshot()

    @router.put("/faults/{endpoint}")
    def set_fault(endpoint: str, spec: FaultSpec) -> dict[str, Any]:
        registry.set(endpoint, spec)
        return registry.snapshot()

    @router.delete("/faults")
    def clear_all() -> dict[str, Any]:
        registry.clear()
        return registry.snapshot()

    @router.delete("/faults/{endpoint}")
    def clear_one(endpoint: str) -> dict[str, Any]:
        registry.clear(endpoint)
        return registry.snapshot()

    return router

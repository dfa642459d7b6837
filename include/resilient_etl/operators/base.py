"""What every pipeline operator shares: the warehouse connection and the run's identity."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from resilient_etl.config.models import RetryPolicy
from resilient_etl.hooks.warehouse import WarehouseHook


class WarehouseOperator(BaseOperator):
    """
    Base of the pipeline operators.

    :param warehouse_conn_id: the warehouse connection
    :param database_retry_policy: how opening a warehouse connection is retried
    """

    template_fields: Sequence[str] = ("warehouse_conn_id",)

    def __init__(
        self, *, warehouse_conn_id: str = WarehouseHook.default_conn_name, database_retry_policy: RetryPolicy | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.warehouse_conn_id = warehouse_conn_id
        self.database_retry_policy = database_retry_policy

    @cached_property
    def warehouse(self) -> WarehouseHook:
        """
        Return the warehouse hook, its schema checked on first use (an empty warehouse is created).

        Every task checks, not only the first of a run: a load cleared alone after a deploy without
        ``db upgrade`` must refuse at once rather than fail on a missing column halfway through.

        :raises SchemaOutOfDateError: the warehouse is at another migration revision than the code
        """
        warehouse = WarehouseHook(self.warehouse_conn_id, retry_policy=self.database_retry_policy)
        warehouse.ensure_schema()
        return warehouse

    @staticmethod
    def run_id(context: Any) -> str:
        """Return the run id of the executing task instance."""
        return context["run_id"]


def folder(override: str | None, default: str | Path) -> Path:
    """Return the override folder when given (a trigger-form param), else the configured one."""
    return Path(override) if override and override.strip() and override != "None" else Path(default)


class LandingOperator(WarehouseOperator):
    """
    A pipeline operator that reads the landing folder, which a trigger may override for one run.

    :param default_landing_dir: the configured landing folder
    :param landing_dir: a one-off override (templated, e.g. ``{{ params.landing_dir }}``; empty = configured)
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "landing_dir")

    def __init__(self, *, default_landing_dir: str | Path, landing_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_landing_dir = str(default_landing_dir)
        self.landing_dir = landing_dir

    @property
    def landing(self) -> Path:
        """Return the landing folder in force for this run (after templating)."""
        return folder(self.landing_dir, self.default_landing_dir)

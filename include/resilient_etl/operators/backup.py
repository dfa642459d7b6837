"""Back the warehouse, the config and the Airflow parts up as one set, then prune by retention (DAG warehouse_backup)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator


class BackupOperator(BaseOperator):
    """
    Write one backup set (``resilient-etl backup``) and prune the sets retention no longer keeps.

    :param backup_dir: where the sets go (templated; default: ``backup.dir``)
    :param include_airflow: keep the Airflow connections, variables and ``task_state_store`` rows too
    """

    template_fields: Sequence[str] = ("backup_dir",)

    def __init__(self, *, backup_dir: str | None = None, include_airflow: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_dir = backup_dir
        self.include_airflow = include_airflow

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.config import config_path, get_config
        from resilient_etl.recovery.airflow_meta import AirflowMetadata
        from resilient_etl.recovery.backup import create_backup, describe_bytes, prune

        cfg = get_config()
        root = Path(self.backup_dir) if self.backup_dir else cfg.backup.dir
        made = create_backup(
            cfg, config_dir=config_path().parent, root=root, airflow=AirflowMetadata() if self.include_airflow else None, report=self.log.info
        )
        deleted = prune(root, cfg.backup.retention)
        self.log.info("Backup set %s: %s; retention deleted %s older sets", made.path, describe_bytes(made.bytes), len(deleted))
        # XCom: the summary a person looks for in the UI (the manifest itself is in the set)
        return {**made.as_row(), "path": str(made.path), "pruned": [p.name for p in deleted]}

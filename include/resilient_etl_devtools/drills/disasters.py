"""
The disaster drills' injectors: the warehouse database dropped (recovered by the runbook's restore of
the last backup set, with the archive's later files re-derived), and the PostgreSQL primary lost
(recovered by promoting its streaming standby and moving the warehouse address to it).

Each runs the recovery the way docs/disaster-recovery.md tells a person to: the ``resilient-etl``
commands in the target's environment, not library calls.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy

from resilient_etl_devtools.drills import pgcluster
from resilient_etl_devtools.drills.injector import DrillSetupError, Injector
from resilient_etl_devtools.drills.target import PG_SERVER
from resilient_etl_devtools.sandbox.data import write_sample_csv


def _wait(target: Any, run: Any, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not target.poll(run):
        if time.time() > deadline:
            target.kill(run)
            raise DrillSetupError(f"the preparing run did not end within {timeout:g} s")
        time.sleep(0.2)


@dataclass
class WarehouseDropped(Injector):
    """
    Prepare: load a first drop and take a backup set. The drill's own drop then loads after the backup
    (the rows the backup cannot have). Inject: ``DROP DATABASE``. Remove: ``resilient-etl restore latest
    --rederive`` (the set, then the archived files of runs it lacks back to landing for the next run).
    """

    fault: Any = None

    def prepare(self, event: Callable[[str], None]) -> None:
        if self.target.spec.warehouse != "postgres":
            raise DrillSetupError("the warehouse-dropped drill needs a PostgreSQL warehouse (targets.<name>.warehouse: postgres)")
        drop = write_sample_csv(
            self.target.folder("landing") / f"drill-before-backup-{int(time.time())}.csv",
            rows=self.target.spec.rows,
            seed=int(time.time()) + 1,
            id_prefix="PRE",  # other suppliers than the drill's own drop: each drop's lines are counted apart
        )
        self.earlier_drops.append(drop)
        run = self.target.start_run()
        _wait(self.target, run)
        if run.state != "success":
            raise DrillSetupError(f"the run loading {drop.path.name} before the backup ended {run.state}: see {run.log_file}")
        event(f"run 0 loaded {drop.path.name} ({drop.rows} rows) before the backup")
        started = time.time()
        made = json.loads(self.target.cli("backup", "--keep-all", "-o", "json"))[0]
        self.measures.update(
            backup_set=made["set"], backup_seconds=round(time.time() - started, 2), backup_bytes=made["bytes"], backup_at=time.time()
        )
        event(f"backup set {made['set']}: {made['bytes']:,} bytes in {self.measures['backup_seconds']} s")

    def inject(self) -> None:
        import datetime as dt

        from resilient_etl.hooks.warehouse.schema import suppliers

        backup_at = dt.datetime.fromtimestamp(self.measures["backup_at"], dt.UTC)
        with self.target.direct_engine().connect() as conn:
            after = conn.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(suppliers).where(suppliers.c.loaded_at > backup_at)
            ).scalar_one()
        self.measures["rows_committed_after_backup"] = int(after)
        self.measures["rpo_window_s"] = round(time.time() - self.measures["backup_at"], 1)
        self.target.drop_database()
        super().inject()

    def remove(self) -> None:
        if not self.active:
            return
        self.active = False  # a failed restore is the drill's failure: never tried twice on the way out
        started = time.time()
        report = json.loads(self.target.cli("restore", "latest", "--rederive", "--reason", "DR drill: warehouse dropped", "-o", "json"))[0]
        self.measures.update(
            restore_seconds=round(time.time() - started, 2),
            restored_suppliers=report["row_counts"].get("suppliers", 0),
            rederived_files=report["rederived_files"],
        )

    def cleanup(self) -> None:
        self.target.ensure_database()  # a drill stopped between the drop and the restore leaves a usable target


@dataclass
class PrimaryLost(Injector):
    """
    Prepare: a primary and its streaming standby on loopback, the warehouse address pointed at the
    primary. Inject: SIGKILL the primary. Remove: promote the standby, move the address to it.
    """

    fault: Any = None
    primary: pgcluster.PgServer | None = None
    standby: pgcluster.PgServer | None = None
    folder: Path | None = None

    def prepare(self, event: Callable[[str], None]) -> None:
        if self.target.spec.warehouse != "postgres":
            raise DrillSetupError("the primary-lost drill needs a PostgreSQL warehouse (targets.<name>.warehouse: postgres)")
        # in /tmp, not the state dir: the server runs as the postgres user, who must reach its folders
        # (a state dir under a root-only folder such as pytest's tmp_path is out of its reach)
        self.folder = Path(tempfile.mkdtemp(prefix="resilient-etl-pg-failover-"))
        pgcluster.hand_to_server_user(self.folder)
        folder = self.folder
        started = time.time()
        self.primary = pgcluster.primary(folder / "primary")
        engine = sqlalchemy.create_engine(self.primary.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{self.target.database}"'))
        finally:
            engine.dispose()
        self.target.repoint_warehouse(self.primary.address)
        self.target.cli("db", "upgrade")
        self.standby = pgcluster.standby_of(self.primary, folder / "standby")
        event(f"primary on :{self.primary.port}, streaming standby on :{self.standby.port} ({time.time() - started:.1f} s); warehouse -> primary")

    def inject(self) -> None:
        assert self.primary is not None
        self.measures["replication_lag_bytes_at_loss"] = pgcluster.replication_lag_bytes(self.primary)
        self.primary.kill()
        super().inject()

    def remove(self) -> None:
        if not self.active or self.standby is None:
            return
        self.active = False
        started = time.time()
        self.standby.promote()
        self.target.repoint_warehouse(self.standby.address)
        self.measures["promote_and_repoint_s"] = round(time.time() - started, 2)

    def cleanup(self) -> None:
        for server in (self.primary, self.standby):
            if server is not None:
                server.stop()
        self.target.repoint_warehouse(PG_SERVER)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


DISASTERS: dict[str, type[Injector]] = {"warehouse_dropped": WarehouseDropped, "primary_lost": PrimaryLost}

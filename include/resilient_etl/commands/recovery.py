"""
The manual overrides and the backups, as commands: ``pipeline``, ``quarantine``, ``rejected``,
``overrides``, ``backup``, ``restore`` (docs/recovery.md, docs/disaster-recovery.md).

Every override is logged, recorded in ``manual_overrides`` with who (``--by``, else
``$RESILIENT_ETL_USER``, else the login name), when and why (``--reason``), and undone by
``resilient-etl overrides undo ID`` where it can be.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from resilient_etl.commands.output import add_output_argument, print_rows

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_HELP = "Exit codes: 0 done, 1 the check or the action failed (the message says why), 2 bad arguments or nothing to act on."


def _cfg() -> Any:
    from resilient_etl.config import get_config

    return get_config()


def _warehouse(cfg: Any) -> Any:
    from resilient_etl.hooks.warehouse import WarehouseHook

    warehouse = WarehouseHook(cfg.warehouse.conn_id)
    warehouse.ensure_schema()
    return warehouse


def _fail(command: str, message: str, code: int = EXIT_FAILED) -> int:
    print(f"resilient-etl {command}: {message}", file=sys.stderr)
    return code


# -- pipeline pause | resume | status, live enrichment suspend | resume ----------------------------------


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from resilient_etl.exceptions import ConfigError
    from resilient_etl.pipeline import overrides
    from resilient_etl.recovery.airflow_api import AirflowApi, AirflowApiError

    cfg = _cfg()
    warehouse = _warehouse(cfg)
    action = args.pipeline_action
    if action in ("suspend-enrichment", "resume-enrichment"):
        return _enrichment(args, warehouse)
    api = AirflowApi(cfg.recovery.airflow_api_conn_id)
    dags = args.dag or cfg.recovery.dags
    rows = []
    try:
        for dag_id in dags:
            if action == "status":
                rows.append({"dag_id": dag_id, "paused": bool(api.dag(dag_id)["is_paused"])})
                continue
            if action == "trigger":
                run_id = api.trigger(dag_id, note=args.reason or None)
                with warehouse.begin() as conn:
                    record = overrides.record(conn, "pipeline-trigger", dag_id, reason=args.reason, by=args.by, details={"run_id": run_id})
                rows.append({"dag_id": dag_id, "run_id": run_id, "override": record.id})
                continue
            before = api.set_paused(dag_id, action == "pause")
            with warehouse.begin() as conn:
                last = overrides.latest(conn, ("pipeline-pause", "pipeline-resume"), dag_id)
                record = overrides.record(
                    conn,
                    f"pipeline-{action}",
                    dag_id,
                    reason=args.reason,
                    by=args.by,
                    reverses=last.id if last is not None and last.action != f"pipeline-{action}" else None,
                    details={"was_paused": before, "api": api.base_url},
                )
            rows.append({"dag_id": dag_id, "paused": action == "pause", "was_paused": before, "override": record.id})
    except (AirflowApiError, ConfigError) as exc:
        return _fail(f"pipeline {action}", str(exc))
    if action == "status":
        with warehouse.begin() as conn:
            suspension = overrides.enrichment_suspension(conn)
        rows.append({"dag_id": "(live enrichment)", "paused": f"suspended by #{suspension.id}" if suspension else False})
    print_rows(rows, args.output)
    return EXIT_OK


def _enrichment(args: argparse.Namespace, warehouse: Any) -> int:
    import datetime as dt

    from resilient_etl.pipeline import overrides

    with warehouse.begin() as conn:
        current = overrides.enrichment_suspension(conn)
        if args.pipeline_action == "resume-enrichment":
            if current is None:
                return _fail("pipeline resume-enrichment", "live enrichment is not suspended", EXIT_USAGE)
            record = overrides.record(
                conn, overrides.RESUME_ENRICHMENT, overrides.ENRICHMENT_TARGET, reason=args.reason, by=args.by, reverses=current.id
            )
        else:
            until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=args.hours)
            record = overrides.record(
                conn,
                overrides.SUSPEND_ENRICHMENT,
                overrides.ENRICHMENT_TARGET,
                reason=args.reason,
                by=args.by,
                until=until,
                details={"hours": args.hours},
            )
    print_rows([record.as_row()], args.output)
    return EXIT_OK


# -- quarantine list | replay ------------------------------------------------------------------------------


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from resilient_etl.recovery import replay

    cfg = _cfg()
    warehouse = _warehouse(cfg)
    if args.quarantine_action == "list":
        with warehouse.begin() as conn:
            if args.rows:
                rows = replay.quarantine_rows(conn, run_id=args.run_id, reason=args.reason_filter)
            else:
                rows = replay.quarantine_summary(conn, run_id=args.run_id, reason=args.reason_filter)
        print_rows(rows, args.output)
        return EXIT_OK
    if not args.run_id:
        return _fail("quarantine replay", "--run-id is required (see `resilient-etl quarantine list`)", EXIT_USAGE)
    with warehouse.begin() as conn:
        done = replay.replay_quarantine(conn, landing_dir=cfg.paths.landing, run_id=args.run_id, reason=args.reason_filter, why=args.why, by=args.by)
    if done.file is None:
        return _fail(
            "quarantine replay",
            f"nothing to replay for run {args.run_id}{' reason ' + args.reason_filter if args.reason_filter else ''}: "
            f"{done.already_replayed} rows replayed before, {done.not_replayable} without a readable row",
            EXIT_USAGE,
        )
    print_rows(
        [
            {
                "file": str(done.file),
                "rows": done.rows,
                "not_replayable": done.not_replayable,
                "replayed_before": done.already_replayed,
                "override": done.override_id,
            }
        ],
        args.output,
    )
    print("the next company_enrichment run loads them (trigger one: `resilient-etl pipeline trigger`)", file=sys.stderr)
    return EXIT_OK


# -- rejected list | requeue -------------------------------------------------------------------------------


def _cmd_rejected(args: argparse.Namespace) -> int:
    from resilient_etl.recovery import replay

    cfg = _cfg()
    if args.rejected_action == "list":
        print_rows(replay.rejected_files(cfg.paths.rejected), args.output)
        return EXIT_OK
    if not args.file:
        return _fail("rejected requeue", "name the file (see `resilient-etl rejected list`)", EXIT_USAGE)
    warehouse = _warehouse(cfg)
    try:
        with warehouse.begin() as conn:
            target = replay.requeue_rejected(
                conn, name=args.file, rejected_dir=cfg.paths.rejected, landing_dir=cfg.paths.landing, why=args.why, by=args.by
            )
    except (FileNotFoundError, FileExistsError) as exc:
        return _fail("rejected requeue", str(exc), EXIT_USAGE)
    print_rows([{"file": args.file, "moved_to": str(target)}], args.output)
    return EXIT_OK


# -- overrides list | undo ---------------------------------------------------------------------------------


def _cmd_overrides(args: argparse.Namespace) -> int:
    from resilient_etl.pipeline import overrides
    from resilient_etl.recovery.undo import UndoRefused, undo

    cfg = _cfg()
    warehouse = _warehouse(cfg)
    if args.overrides_action == "list":
        with warehouse.begin() as conn:
            rows = [o.as_row() for o in overrides.history(conn, action=args.action, limit=args.limit)]
        print_rows(rows, args.output)
        return EXIT_OK
    if args.id is None:
        return _fail("overrides undo", "name the override id (see `resilient-etl overrides list`)", EXIT_USAGE)
    try:
        record = undo(cfg, warehouse, args.id, why=args.why, by=args.by)
    except UndoRefused as exc:
        return _fail("overrides undo", str(exc), EXIT_USAGE)
    print_rows([record.as_row()], args.output)
    return EXIT_OK


# -- backup [create | list | prune | verify], restore ------------------------------------------------------


def _airflow_metadata(enabled: bool) -> Any:
    if not enabled:
        return None
    from resilient_etl.recovery.airflow_meta import AirflowMetadata

    return AirflowMetadata()


def _cmd_backup(args: argparse.Namespace) -> int:
    from resilient_etl.config import config_path
    from resilient_etl.recovery import backup

    cfg = _cfg()
    root = Path(args.dir) if args.dir else cfg.backup.dir
    action = args.backup_action or "create"
    if action == "list":
        print_rows([s.as_row() for s in backup.list_sets(root)], args.output)
        return EXIT_OK
    if action == "prune":
        deleted = backup.prune(root, cfg.backup.retention)
        print_rows([{"deleted": str(p)} for p in deleted], args.output)
        return EXIT_OK
    from resilient_etl.commands.progress import progress_lines

    with progress_lines("backup") as report:
        made = backup.create_backup(cfg, config_dir=config_path().parent, root=root, airflow=_airflow_metadata(not args.no_airflow), report=report)
    deleted = backup.prune(root, cfg.backup.retention) if not args.keep_all else []
    print_rows([{**made.as_row(), "path": str(made.path), "pruned": len(deleted)}], args.output)
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.pipeline import overrides
    from resilient_etl.recovery import backup, replay

    cfg = _cfg()
    root = cfg.backup.dir
    try:
        if args.set == "latest":
            sets = backup.list_sets(root)
            if not sets:
                return _fail("restore", f"no backup set in {root}", EXIT_USAGE)
            chosen = sets[-1]
        else:
            path = Path(args.set)
            chosen = backup.load_set(path if path.is_absolute() or path.exists() else root / args.set)
        problems = backup.verify_set(chosen)
        if args.verify_only:
            rows = [
                {"set": chosen.name, "file": f["name"], "bytes": f["bytes"], "ok": not any(p.startswith(f["name"] + ":") for p in problems)}
                for f in chosen.manifest["files"]
            ]
            print_rows(rows, args.output)
            for p in problems:
                print(f"DAMAGED: {p}", file=sys.stderr)
            return EXIT_FAILED if problems else EXIT_OK
        from resilient_etl.commands.progress import progress_lines

        target = WarehouseHook(args.warehouse_conn_id or cfg.warehouse.conn_id)
        with progress_lines("restore") as progress:
            report = backup.restore_set(
                chosen,
                warehouse=target,
                config_dir=Path(args.config_dir) if args.config_dir else None,
                airflow=_airflow_metadata(args.airflow),
                key_env=cfg.backup.key_env,
                report=progress,
            )
    except backup.BackupError as exc:
        return _fail("restore", str(exc))
    with target.begin() as conn:
        rederived = (
            replay.rederive_from_archive(
                conn, archive_dir=cfg.paths.archive, landing_dir=cfg.paths.landing, why=f"restored {chosen.name}", by=args.by
            )
            if args.rederive
            else []
        )
        overrides.record(
            conn, "restore", chosen.name, reason=args.reason, by=args.by, details={**report.as_dict(), "rederived": [p.name for p in rederived]}
        )
    out = report.as_dict() | {"rederived_files": [p.name for p in rederived]}
    if args.output in ("json", "yaml"):
        print_rows([out], args.output)
    else:
        print_rows(
            [
                {
                    "set": out["set"],
                    "warehouse": out["warehouse"],
                    "suppliers": out["row_counts"].get("suppliers", 0),
                    "revision": out["schema_revision"],
                    "seconds": out["seconds"],
                    "rederived_files": len(rederived),
                }
            ],
            args.output,
        )
    if rederived:
        print(f"{len(rederived)} archived files of runs after the backup are back in landing: the next run reloads them", file=sys.stderr)
    return EXIT_OK


# -- registration ------------------------------------------------------------------------------------------


def _who(parser: argparse.ArgumentParser, *, why: str = "reason") -> None:
    parser.add_argument(f"--{why}", dest="why" if why != "reason" else "reason", default="", help="why: kept with the override")
    parser.add_argument("--by", default=None, help="who (default: $RESILIENT_ETL_USER, else the login name)")


def add_recovery_commands(sub: Any) -> None:
    """Add ``pipeline``, ``quarantine``, ``rejected``, ``overrides``, ``backup`` and ``restore`` to the command line."""
    fmt = argparse.RawDescriptionHelpFormatter

    pipeline = sub.add_parser(
        "pipeline",
        help="pause, resume or trigger the pipeline's DAGs (Airflow API); suspend or resume live enrichment",
        formatter_class=fmt,
        description=(
            "pause | resume: pause or resume recovery.dags through the Airflow REST API (connection recovery.airflow_api_conn_id).\n"
            "status: each DAG's paused flag, and whether live enrichment is suspended. trigger: start a run of each now.\n"
            "suspend-enrichment: for a declared API outage, load every row as `pending` (no API calls) for --hours;\n"
            "resume-enrichment: back to live lookups (the backlog re-enriches the pending rows).\n" + EXIT_HELP
        ),
    )
    pipeline.add_argument("pipeline_action", choices=["pause", "resume", "status", "trigger", "suspend-enrichment", "resume-enrichment"])
    pipeline.add_argument("--dag", action="append", help="a DAG id (repeatable; default: recovery.dags)")
    pipeline.add_argument("--hours", type=float, default=4.0, help="suspend-enrichment: how long before it lapses by itself (default 4)")
    _who(pipeline)
    add_output_argument(pipeline)
    pipeline.set_defaults(func=_cmd_pipeline)

    quarantine = sub.add_parser(
        "quarantine",
        help="list quarantined rows by run and reason; replay them through validate/enrich/load after the cause is fixed",
        formatter_class=fmt,
        description=(
            "list: rows per run, stage and reason (--rows: one line per row, with its file, line and detail).\n"
            "replay --run-id R [--reason CATEGORY] --why TEXT: write the rows not replayed yet to a CSV in landing for the next\n"
            "run; each row is replayed once (a second replay finds nothing), a supplier already loaded is updated, not doubled.\n" + EXIT_HELP
        ),
    )
    quarantine.add_argument("quarantine_action", choices=["list", "replay"])
    quarantine.add_argument("--run-id", default=None, help="the run whose quarantine is listed or replayed")
    quarantine.add_argument("--reason", dest="reason_filter", default=None, help="one error category (e.g. invalid_postcode)")
    quarantine.add_argument("--rows", action="store_true", help="list: one line per row instead of counts")
    _who(quarantine, why="why")
    add_output_argument(quarantine)
    quarantine.set_defaults(func=_cmd_quarantine)

    rejected = sub.add_parser(
        "rejected",
        help="list rejected files with their reason; requeue one into landing once it is fixed",
        formatter_class=fmt,
        description="list: each file in paths.rejected with its reason.\nrequeue FILE --why TEXT: move it back to landing for the next run.\n"
        + EXIT_HELP,
    )
    rejected.add_argument("rejected_action", choices=["list", "requeue"])
    rejected.add_argument("file", nargs="?", help="requeue: the rejected file's name")
    _who(rejected, why="why")
    add_output_argument(rejected)
    rejected.set_defaults(func=_cmd_rejected)

    over = sub.add_parser(
        "overrides",
        help="list the manual overrides (who, when, why); undo one",
        formatter_class=fmt,
        description=(
            "list [--action A]: the newest overrides first.\n"
            "undo ID --why TEXT: reverse one (pause <-> resume, enrichment suspend <-> resume, a breaker forced open -> reset,\n"
            "a replay or a requeue whose file no run has taken yet -> withdrawn); recorded as a new override.\n" + EXIT_HELP
        ),
    )
    over.add_argument("overrides_action", choices=["list", "undo"])
    over.add_argument("id", type=int, nargs="?")
    over.add_argument("--action", default=None, help="list: only this action (e.g. pipeline-pause)")
    over.add_argument("--limit", type=int, default=50)
    _who(over, why="why")
    add_output_argument(over)
    over.set_defaults(func=_cmd_overrides)

    backup = sub.add_parser(
        "backup",
        help="write a checksummed backup set (warehouse, config, Airflow connections/variables/state rows); list or prune sets",
        formatter_class=fmt,
        description=(
            "(no action) or create: one set in backup.dir named by its UTC time, then prune by backup.retention.\n"
            "list: the sets, newest last. prune: delete what retention no longer keeps.\n"
            "Secrets are encrypted with the Fernet key in $RESILIENT_ETL_BACKUP_KEY (backup.key_env), else left out (the manifest says so).\n"
            + EXIT_HELP
        ),
    )
    backup.add_argument("backup_action", nargs="?", choices=["create", "list", "prune"])
    backup.add_argument("--dir", default=None, help="where the sets go (default: backup.dir)")
    backup.add_argument("--no-airflow", action="store_true", help="leave the Airflow connections, variables and state rows out")
    backup.add_argument("--keep-all", action="store_true", help="create: do not prune afterwards")
    add_output_argument(backup)
    backup.set_defaults(func=_cmd_backup)

    restore = sub.add_parser(
        "restore",
        help="verify a backup set, or restore it into an empty warehouse and check the counts",
        formatter_class=fmt,
        description=(
            "SET: a set's path or name in backup.dir, or `latest`. --verify-only: check sizes and checksums, restore nothing.\n"
            "The target warehouse must be empty (PostgreSQL: absent is fine, it is created). --rederive copies back to landing\n"
            "the archived files of runs the set does not have, so the next run reloads what was committed after the backup.\n" + EXIT_HELP
        ),
    )
    restore.add_argument("set")
    restore.add_argument("--verify-only", action="store_true")
    restore.add_argument("--warehouse-conn-id", default=None, help="restore into this connection (default: warehouse.conn_id)")
    restore.add_argument("--config-dir", default=None, help="also unpack the set's config files into this empty folder")
    restore.add_argument("--airflow", action="store_true", help="also restore connections, variables and task_state_store rows the metadata DB lacks")
    restore.add_argument("--rederive", action="store_true", help="copy the archived files of runs after the backup back to landing")
    _who(restore)
    add_output_argument(restore)
    restore.set_defaults(func=_cmd_restore)

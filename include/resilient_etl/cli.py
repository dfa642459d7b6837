"""The ``resilient-etl`` command: config check, breakers, health, incidents (``resilient-etl-dev`` has the dev tools)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from resilient_etl.commands.output import (
    OUTPUT_FORMATS,
    add_exit_codes,
    add_output_argument,
    default_output,
    emit,
    print_rows,
    results,
    results_on_stdout,
)
from resilient_etl.exceptions import ConfigError, ResilientEtlError

__all__ = ["OUTPUT_FORMATS", "add_exit_codes", "add_output_argument", "build_parser", "emit", "main", "print_rows", "run_command"]


def _cmd_config_check(args: argparse.Namespace) -> int:
    from resilient_etl.config import config_path, load_config

    try:
        path = Path(args.path) if args.path else config_path()
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 1
    from resilient_etl.config import ENVIRONMENT_ENV, OVERRIDE_PREFIX

    layers = [str(path)]
    if os.environ.get(ENVIRONMENT_ENV):
        layers.append(f"{path.stem}.{os.environ[ENVIRONMENT_ENV]}{path.suffix} ({ENVIRONMENT_ENV})")
    layers += sorted(k for k in os.environ if k.startswith(OVERRIDE_PREFIX))
    emit(f"# valid. Layers: {' + '.join(layers)}. Effective values:")
    emit(yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False), end="")
    return 0


EXIT_SHARED_STATE_UNAVAILABLE = 3  # `breakers`: 0 all closed, 1 one is open, 3 Redis (breaker_store) unreachable


def _cmd_breakers(args: argparse.Namespace) -> int:
    import logging

    from resilient_etl.config import get_config
    from resilient_etl.hooks.shared_state import configured_store
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.recovery.breakers import force_breaker
    from resilient_etl.resilience.breaker import breaker_states

    cfg = get_config()
    warehouse = WarehouseHook(cfg.warehouse.conn_id)
    warehouse.ensure_schema()
    action = getattr(args, "breaker_action", None)
    if action is None:
        store = configured_store(cfg, warehouse)
        policies = [cfg.breakers.policy(name) for name in ("postcodes_io", "companies_house")]
        # The store's own warning would be a second line: this command says it once, with its exit code.
        fallback_log = logging.getLogger("resilient_etl.resilience.stores.fallback")
        was_disabled, fallback_log.disabled = fallback_log.disabled, True
        try:
            states = breaker_states(store, policies)
        finally:
            fallback_log.disabled = was_disabled
        if args.output == "json":
            emit(json.dumps(states, indent=2))
        else:
            keys = ("name", "state", "consecutive_failures", "opened_at", "probe_at", "seconds_to_probe")
            print_rows([{k: s.get(k) for k in keys} for s in states], args.output, title="circuit breakers")
        if getattr(store, "degraded", None) is not None:
            print(
                f"resilient-etl breakers: shared-state store {store.what} unavailable; these are the warehouse "
                "tables the workers fall back to (runbook: shared-state-unavailable)",
                file=sys.stderr,
            )
            return EXIT_SHARED_STATE_UNAVAILABLE
        return 0 if all(s["state"] == "closed" for s in states) else 1
    try:
        change = force_breaker(cfg, warehouse, args.name, open_minutes=args.minutes if action == "open" else None, why=args.reason, by=args.by)
    except KeyError as exc:
        print(f"resilient-etl breakers {action}: {exc.args[0]}", file=sys.stderr)
        return 2
    emit(
        f"circuit breaker {change.name}: {change.old} -> {change.new} ({change.reason}) at {change.at.isoformat(timespec='seconds')} (override #{change.override.id})"
    )
    return 0


def _cmd_incidents(args: argparse.Namespace) -> int:
    from resilient_etl.alerting import incidents as store
    from resilient_etl.alerting.engine import Alerter
    from resilient_etl.recovery.incidents import change_incident

    alerter = Alerter()
    try:
        if args.action == "list":
            alerter.record_spooled()  # alerts sent while the warehouse was down become incidents now
            with alerter.warehouse.begin() as conn:
                rows = store.active(conn)
            listing = [
                {
                    "id": i.id,
                    "status": i.status,
                    "severity": str(i.severity),
                    "category": i.category,
                    "task": f"{i.dag_id}.{i.task_id or '*'}",
                    "occurrences": i.occurrences,
                    "first_seen_at": i.first_seen_at.isoformat(timespec="seconds"),
                    "escalation_level": i.escalation_level,
                    "detail": i.detail or "",
                }
                for i in rows
            ]
            if not rows and args.output == "table":
                emit("no open incidents")
            else:
                print_rows(listing, args.output, title="open and acknowledged incidents")
            return 0
        if args.id is None:
            print(f"incidents {args.action}: an incident id is required", file=sys.stderr)
            return 2
        change = change_incident(alerter, args.id, args.action, note=args.note, by=args.by)
    except (LookupError, ValueError) as exc:
        print(f"incidents {args.action}: {exc}", file=sys.stderr)
        return 2
    emit(f"incident #{change.incident.id} {change.incident.status} (by {change.override.by_user}, override #{change.override.id})")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    import time

    from resilient_etl.config import get_config
    from resilient_etl.hooks.warehouse import WarehouseHook, migrations

    if args.db_action == "downgrade" and not args.revision:
        print("db downgrade needs a target revision (e.g. 0001, or -1 for one step)", file=sys.stderr)
        return 2
    if args.db_action == "history":
        rows = [
            {"revision": r.revision, "down_revision": r.down_revision or "", "head": r.is_head, "doc": r.doc.splitlines()[0]}
            for r in migrations.history()
        ]
        print_rows(rows, args.output)
        return 0
    warehouse = WarehouseHook(get_config().warehouse.conn_id)
    started = time.monotonic()
    with warehouse.begin() as conn:
        if args.db_action == "current":
            have, want = migrations.current(conn), migrations.head()
            print_rows([{"current": have or "(empty warehouse)", "head": want, "up_to_date": have == want}], args.output)
            return 0 if have == want else 1
        if args.db_action == "upgrade":
            before, after = migrations.upgrade(conn, args.revision or "head")
        else:
            before, after = migrations.downgrade(conn, args.revision)
    emit(f"warehouse {warehouse.warehouse_conn_id}: {before or '(empty)'} -> {after or '(empty)'} in {time.monotonic() - started:.1f} s")
    return 0


def _cmd_deploy_check(args: argparse.Namespace) -> int:
    from resilient_etl.deploy import deploy_check

    results = deploy_check()
    if args.output == "table" and not args.table:
        for r in results:
            emit(f"{'PASS' if r.ok else 'FAIL'}  {r.check}: {r.detail}")
    else:
        print_rows([{"check": r.check, "ok": r.ok, "detail": r.detail} for r in results], args.output)
    return 0 if all(r.ok for r in results) else 1


def _cmd_health(args: argparse.Namespace) -> int:
    from resilient_etl.health import EXIT_CODES, check_health

    doc = check_health()
    if args.output == "json":
        emit(json.dumps(doc, indent=2))
    elif args.output == "yaml":
        emit(yaml.safe_dump(doc, sort_keys=False), end="")
    else:
        rows = [
            {
                "check": name,
                "component": o.get("componentId", ""),
                "status": o["status"],
                "observed": f"{o['observedValue']} {o.get('observedUnit') or ''}".strip() if "observedValue" in o else "",
                "output": o.get("output", ""),
            }
            for name, observations in sorted(doc["checks"].items())
            for o in observations
        ]
        print_rows(rows, args.output, title=f"health: {doc['status']}")
    return EXIT_CODES[doc["status"]]


COMMAND_PLUGINS = "resilient_etl.commands"  # entry points adding command groups (resilient-etl-dev's ``cluster``)


def _add_plugin_commands(sub: Any) -> None:
    """Add the command groups other installed packages declare (``resilient_etl.commands`` entry points)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=COMMAND_PLUGINS):
        ep.load()(sub)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = argparse.ArgumentParser(
        prog="resilient-etl",
        description="Check the config, the breakers and the health; list, acknowledge and resolve incidents (dev tools: resilient-etl-dev).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and print its effective values")
    check.add_argument(
        "path",
        nargs="?",
        help="config file (default: $RESILIENT_ETL_CONFIG, else $AIRFLOW_HOME/resilience.yaml, else the checkout's config/resilience.yaml)",
    )
    check.set_defaults(func=_cmd_config_check)

    breakers = sub.add_parser(
        "breakers", help="print every circuit breaker's shared state (exit 1 unless all closed, 3 when Redis is unreachable); reset or open one"
    )
    breakers.set_defaults(func=_cmd_breakers)
    add_output_argument(breakers)
    add_exit_codes(
        breakers,
        {
            0: "every breaker closed (or the change was made)",
            1: "a breaker is open or half-open",
            2: "no such breaker",
            EXIT_SHARED_STATE_UNAVAILABLE: "the shared-state store (Redis) is unreachable: the warehouse tables are shown",
        },
    )
    breakers_sub = breakers.add_subparsers(dest="breaker_action")
    for verb, text in (
        ("reset", "force a breaker closed now (the API is known to be back); recorded in breaker_events"),
        ("open", "force a breaker open for maintenance: calls use the fallbacks until --minutes pass"),
    ):
        forced = breakers_sub.add_parser(verb, help=text)
        forced.add_argument("name", help="postcodes_io or companies_house")
        forced.add_argument("--reason", default="", help="why, kept with the change")
        forced.add_argument("--by", default=None, help="who (default: $RESILIENT_ETL_USER, else the login name)")
        if verb == "open":
            forced.add_argument("--minutes", type=float, default=60.0, help="until the first probe (default 60)")

    health = sub.add_parser("health", help="check every dependency; print application/health+json (exit 0 pass, 1 warn, 2 fail)")
    health.set_defaults(func=_cmd_health)
    add_output_argument(health)
    add_exit_codes(health, {0: "pass", 1: "warn", 2: "fail"})

    incidents = sub.add_parser("incidents", help="list, acknowledge or resolve incidents")
    incidents.add_argument("action", choices=["list", "ack", "resolve"])
    incidents.add_argument("id", type=int, nargs="?")
    incidents.add_argument("--note", help="resolution note, sent with the recovery message")
    incidents.add_argument("--by", default=None, help="who (default: $RESILIENT_ETL_USER, else the login name)")
    incidents.set_defaults(func=_cmd_incidents)
    add_output_argument(incidents)
    add_exit_codes(incidents, {0: "done", 2: "no such incident, or it cannot be acknowledged/resolved now"})

    db = sub.add_parser(
        "db",
        help="warehouse schema migrations (Alembic; version table resilient_etl_alembic_version)",
        description=(
            "upgrade [REV]: migrate to REV (default head; an empty warehouse is created at head, one made before migrations "
            "is taken as revision 0001); downgrade REV: back to REV (or -1 for one step); current: the warehouse's revision "
            "(exit 1 unless at head); history: every revision."
        ),
    )
    db.add_argument("db_action", choices=["upgrade", "downgrade", "current", "history"])
    db.add_argument("revision", nargs="?", help="target revision (upgrade: default head; downgrade: required, e.g. 0001 or -1)")
    add_output_argument(db)
    add_exit_codes(db, {0: "done (current: at head)", 1: "current: the warehouse is not at head", 2: "usage"})
    db.set_defaults(func=_cmd_db)

    deploy = sub.add_parser(
        "deploy",
        help="check a deployment target before and after a release (exit 0 all pass, 1 one failed)",
        description=(
            "check: the config is valid, every connection the DAGs use is defined and answers, the warehouse schema is at the "
            "migration head, Airflow has no DAG import errors, health is not fail, and Celery workers answer. One line per check; "
            "exit 0 when all pass, 1 otherwise. See docs/deployment.md."
        ),
    )
    deploy.add_argument("deploy_action", choices=["check"])
    deploy.add_argument("--table", action="store_true", help="a table instead of one PASS/FAIL line per check")
    add_output_argument(deploy, default="table")  # PASS/FAIL lines, piped or not: release scripts grep them
    add_exit_codes(deploy, {0: "every check passed", 1: "a check failed"})
    deploy.set_defaults(func=_cmd_deploy_check)

    from resilient_etl.commands.recovery import add_recovery_commands

    add_recovery_commands(sub)
    _add_plugin_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    return run_command(build_parser().parse_args(argv))


EXIT_NO_CONNECTION = 2  # a connection the command needs is not defined
EXIT_FAILED = 1  # a typed failure (the warehouse unreachable, a bad config, …): one line with its category


def run_command(args: Any) -> int:
    """Run a parsed command (its ``func``); return its exit code, or 141 when the reader of stdout went away."""
    try:
        with results_on_stdout():
            # imported here: Airflow may print on import, and stdout is kept for results from now on
            from airflow.sdk.exceptions import AirflowNotFoundException

            if getattr(args, "output", "") is None:
                args.output = default_output()  # a table on a terminal, JSON when piped
            try:
                code = args.func(args)
            except AirflowNotFoundException as exc:  # boundary: a missing connection is a setup problem, said in one line
                print(
                    f"resilient-etl {args.command}: {exc} (define it as AIRFLOW_CONN_<ID>, in the metadata DB or the secrets "
                    'backend; locally: eval "$(resilient-etl-dev env)")',
                    file=sys.stderr,
                )
                return EXIT_NO_CONNECTION
            except ResilientEtlError as exc:  # boundary: what failed and its category (docs/recovery.md), not a traceback
                print(f"resilient-etl {args.command}: {type(exc).__name__} ({exc.category.value}): {exc}", file=sys.stderr)
                return EXIT_FAILED
            results().flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as `yes | head` does, and keep Python's
        # exit-time flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())

"""
The manual testing checklist (``docs/testing-checklist.md``) and its automated twins.

Items are generated from the drill catalogue (a scenario per failure type), the classification matrix
(an alert per category), the quality rules, the health checks, the validation SQL and a pre-production
list. Each item names its twin - a test (``tests/…::test_…``), a drill, a SQL check run against the
warehouse, or a command - that checks the same thing; ``resilient-etl checklist run`` executes the twins
and prints the checklist with the boxes ticked, for a pre-production sign-off.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resilient_etl.config import ResilienceConfig
from resilient_etl_devtools.drills.catalogue import Catalogue
from resilient_etl_devtools.paths import PROJECT_ROOT

DOC_FILE = PROJECT_ROOT / "docs" / "testing-checklist.md"
TESTS = PROJECT_ROOT / "tests"

# The validation SQL a person runs after a load, and what it must return (ANSI SQL: every dialect).
SQL_CHECKS: dict[str, tuple[str, str, str]] = {
    "reconciliation": (
        "Every run reconciles: rows in = loaded + quarantined + pending",
        "SELECT run_id, rows_in, rows_loaded, rows_quarantined, rows_pending FROM pipeline_runs "
        "WHERE rows_in <> rows_loaded + rows_quarantined + rows_pending",
        "no rows",
    ),
    "no-duplicate-suppliers": (
        "No supplier id is loaded twice",
        "SELECT supplier_id, COUNT(*) FROM suppliers GROUP BY supplier_id HAVING COUNT(*) > 1",
        "no rows",
    ),
    "quarantine-reasons": (
        "Every quarantined row has its reason, the rule's detail and its line",
        "SELECT id, error_category, line_number FROM quarantine WHERE error_category = '' OR detail = '' OR line_number < 1",
        "no rows",
    ),
    "enrichment-statuses": (
        "Every supplier's enrichment status is live, cached, fallback or pending",
        "SELECT supplier_id, enrichment_status FROM suppliers WHERE enrichment_status NOT IN ('live', 'cached', 'fallback', 'pending')",
        "no rows",
    ),
    "pending-backlog": (
        "Nothing waits as pending for more than a day (the backlog re-enriches it)",
        "SELECT supplier_id FROM suppliers WHERE enrichment_status = 'pending' AND loaded_at < :day_ago",
        "no rows",
    ),
}


@dataclass(frozen=True)
class Item:
    """One checklist line: what to do, what must happen, and the automated twin that checks the same."""

    section: str
    title: str
    steps: str
    expected: str
    twin: str  # test:<node id> | drill:<scenario> | sql:<check> | command:<resilient-etl args>

    @property
    def kind(self) -> str:
        return self.twin.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.twin.split(":", 1)[1]


def items(cfg: ResilienceConfig, catalogue: Catalogue) -> list[Item]:
    """Return every checklist item, in document order."""
    out = []
    for name, s in catalogue.scenarios.items():
        t = s.targets
        detect = f"detected within {t.detect_seconds:g} s (health, an alert or an incident)" if t.detect_seconds else "absorbed: no alert needed"
        out.append(
            Item(
                "Failure scenarios",
                f"{name}: {s.title}",
                f"Fault: {s.injected_at}; {s.start.replace('_', ' ')}, for {s.duration_seconds:g} s. Recovery: {s.recovery.mode} "
                f"(recovery.md#{s.recovery.runbook}).",
                f"{detect}; healthy again within {t.rto_seconds:g} s; {t.rows_lost} rows lost, {t.rows_duplicated} doubled",
                f"drill:{name}",
            )
        )
    for category, entry in cfg.classification.entries().items():
        route = getattr(cfg.alerts.routes, entry.severity)
        out.append(
            Item(
                "Alerts by failure category",
                f"a `{category}` failure is classified and routed",
                "Cause one (the drill, or the example in tests/unit/classification/test_classify.py); read the alert.",
                f"{entry.severity}: {', '.join(route.channels) or 'recorded only'}; the alert links recovery.md#{entry.runbook}",
                "test:tests/unit/classification/test_classify.py::test_classify_maps_every_failure_to_category_severity_and_action",
            )
        )
    for rule in type(cfg.quality).model_fields:
        limit = getattr(cfg.quality, rule)
        out.append(
            Item(
                "Data quality",
                f"rule `{rule}`",
                "Drop a file breaking the rule below its warn share, between warn and fail, and above fail.",
                f"below warn: pass; up to {limit.fail:.0%}: loads with a warning; above {limit.fail:.0%}: the file goes to rejected/ "
                "with a .quality.json report",
                "test:tests/unit/pipeline/test_quality.py::test_each_row_rule_at_below_and_above_its_limits",
            )
        )
    out.append(
        Item(
            "Data quality",
            "a file that warns loads, a file that fails is rejected, in one run",
            "Drop both beside each other and run the pipeline.",
            "the warning file loads; the failing one is in rejected/ with its report; the run says which",
            "test:tests/integration/test_company_enrichment_run.py::test_a_file_that_warns_loads_and_a_file_that_fails_is_rejected",
        )
    )
    for name, (title, sql, expected) in SQL_CHECKS.items():
        out.append(Item("Validation SQL (after a load)", title, f"```sql\n{sql}\n```", expected, f"sql:{name}"))
    from resilient_etl.health.checks import default_checks

    for component in default_checks(cfg):
        out.append(
            Item(
                "Health checks",
                f"`{component}` is in the health document",
                "`resilient-etl health`",
                "its observations pass on a healthy deployment; a stopped dependency fails (or warns) with the reason in `output`",
                "test:tests/integration/test_health.py::test_one_document_for_every_component_and_the_cli_exit_code",
            )
        )
    out += [
        Item("Pre-production", "the config is valid", "`resilient-etl config check`", "exit 0: `# valid`", "command:config check"),
        Item(
            "Pre-production",
            "the warehouse schema is at the code's revision",
            "`resilient-etl db current`",
            "exit 0: up_to_date true",
            "command:db current",
        ),
        Item(
            "Pre-production",
            "every deployment check passes",
            "`resilient-etl deploy check`",
            "every line PASS",
            "test:tests/integration/test_deploy_check.py::test_deploy_check_names_what_is_missing_or_behind_and_passes_once_fixed",
        ),
        Item(
            "Pre-production",
            "a backup set restores into an empty warehouse",
            "`resilient-etl backup`, then `resilient-etl restore latest --verify-only`",
            "exit 0; every file's checksum matches",
            "test:tests/integration/recovery/test_backup.py::test_a_backup_restores_into_an_empty_warehouse_with_every_row",
        ),
        Item(
            "Pre-production",
            "every manual override is recorded and undoable",
            "Pause and resume, replay a quarantine, requeue a rejected file; `resilient-etl overrides list`",
            "each action listed with who, when, why; `overrides undo ID` reverses it",
            "test:tests/integration/recovery/test_overrides.py::test_pause_and_resume_go_through_the_airflow_api_and_are_recorded",
        ),
        Item(
            "Pre-production",
            "an end-to-end run reconciles and enriches",
            "Drop a sample (`resilient-etl-dev sample`) and trigger `company_enrichment`",
            "success; rows in = loaded + quarantined + pending",
            "test:tests/integration/test_company_enrichment_run.py::test_end_to_end_run_reconciles_and_enriches",
        ),
        Item(
            "Pre-production",
            "a clear resumes after the last committed chunk",
            "Kill the load mid-way, clear it in the UI",
            "no row loaded or quarantined twice",
            "test:tests/integration/test_company_enrichment_run.py::test_clear_and_rerun_resumes_after_the_last_committed_chunk",
        ),
    ]
    return out


def missing_twins(checklist: list[Item], catalogue: Catalogue) -> list[str]:
    """Return each item whose twin does not exist (a test function, a drill, a SQL check), named."""
    missing = []
    for item in checklist:
        if item.kind == "test":
            path, _, function = item.target.partition("::")
            file = PROJECT_ROOT / path
            names = {n.name for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.FunctionDef)} if file.exists() else set()
            if function not in names:
                missing.append(f"{item.title}: no test {item.target}")
        elif item.kind == "drill" and item.target not in catalogue.scenarios:
            missing.append(f"{item.title}: no drill {item.target}")
        elif item.kind == "sql" and item.target not in SQL_CHECKS:
            missing.append(f"{item.title}: no SQL check {item.target}")
        elif item.kind not in ("test", "drill", "sql", "command"):
            missing.append(f"{item.title}: no twin")
    return missing


def render(checklist: list[Item], outcomes: dict[str, bool | None] | None = None) -> str:
    """Return the checklist as Markdown; with ``outcomes`` (twin -> passed), the boxes are ticked."""
    header = (
        "<!-- Generated by `resilient-etl checklist write` from config/drills.yaml, config/resilience.yaml (classification, quality) "
        "and the health checks: do not edit here. -->"
        if outcomes is None
        else f"<!-- `resilient-etl checklist run` at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} -->"
    )
    lines = [
        header,
        "# Testing checklist",
        "",
        "Each item: what to do, what must happen (the pass criterion), and its **automated twin** - the test, drill, SQL "
        "check or command that checks the same thing. `resilient-etl checklist run` executes the twins and prints this list "
        "with the boxes ticked (`[x]` passed, `[ ]` failed, `[?]` not run).",
    ]
    section = None
    for item in checklist:
        if item.section != section:
            section = item.section
            lines += ["", f"## {section}", ""]
        box = "[ ]" if outcomes is None else {True: "[x]", False: "[ ] **FAILED**", None: "[?]"}[outcomes.get(item.twin)]
        lines.append(f"- {box} **{item.title}**")
        if "\n" in item.steps:  # a code block (the validation SQL), indented under its item
            lines += ["  - Do:", "", *(f"    {line}" for line in item.steps.splitlines()), ""]
        else:
            lines.append(f"  - Do: {item.steps}")
        lines += [f"  - Pass when: {item.expected}", f"  - Twin: `{item.twin}`"]
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    """What ``checklist run`` found per twin."""

    outcomes: dict[str, bool | None] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)


def _run_tests(node_ids: list[str], run: Run) -> None:
    report = Path(tempfile.mkdtemp(prefix="retl-checklist-")) / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *node_ids],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    results: dict[str, list[bool]] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "").split("[")[0]
            path = case.get("classname", "").replace(".", "/")
            ok = not any(child.tag in ("failure", "error") for child in case)
            skipped = any(child.tag == "skipped" for child in case)
            results.setdefault(f"{path}.py::{name}", []).append(ok and not skipped)
    for node in node_ids:
        seen = results.get(node)
        run.outcomes[f"test:{node}"] = all(seen) if seen else None
        run.details[f"test:{node}"] = f"{sum(seen)}/{len(seen)} passed" if seen else "not collected"


def _run_sql(cfg: ResilienceConfig, names: list[str], run: Run) -> None:
    import datetime as dt

    from sqlalchemy import text

    from resilient_etl.hooks.warehouse import WarehouseHook

    warehouse = WarehouseHook(cfg.warehouse.conn_id)
    warehouse.ensure_schema()
    with warehouse.begin() as conn:
        for name in names:
            sql = SQL_CHECKS[name][1]
            params = {"day_ago": dt.datetime.now(dt.UTC) - dt.timedelta(days=1)} if ":day_ago" in sql else {}
            rows = conn.execute(text(sql), params).all()
            run.outcomes[f"sql:{name}"] = not rows
            run.details[f"sql:{name}"] = "no rows" if not rows else f"{len(rows)} rows, first {tuple(rows[0])}"


def _run_commands(commands: list[str], run: Run) -> None:
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "resilient_etl.cli", *command.split()], capture_output=True, text=True, check=False)
        run.outcomes[f"command:{command}"] = done.returncode == 0
        run.details[f"command:{command}"] = f"exit {done.returncode}"


def _drills(catalogue: Catalogue, names: list[str], run: Run, *, live: bool) -> None:
    from resilient_etl_devtools.drills.cli import RESULTS_FILE

    if live:
        report = Path(tempfile.mkdtemp(prefix="retl-checklist-")) / "drills.json"
        exe = Path(sys.executable).with_name("resilient-etl")
        subprocess.run([str(exe), "drill", "run", *names, "--record", str(report)], capture_output=True, text=True, check=False)
        recorded = {r["scenario"]: r for r in json.loads(report.read_text())} if report.exists() else {}
    else:
        recorded = {r["scenario"]: r for r in json.loads(RESULTS_FILE.read_text())} if RESULTS_FILE.exists() else {}
    for name in names:
        r = recorded.get(name)
        run.outcomes[f"drill:{name}"] = None if r is None else bool(r["passed"])
        run.details[f"drill:{name}"] = "not recorded" if r is None else f"{'ran now' if live else 'recorded'}: RTO {r['rto_s']} s"


def run_twins(cfg: ResilienceConfig, catalogue: Catalogue, checklist: list[Item], *, kinds: set[str], live_drills: bool = False) -> Run:
    """Execute the twins of ``kinds`` (test, drill, sql, command); drills are read from the recorded results unless ``live_drills``."""
    run = Run()
    twins = list(dict.fromkeys(i.twin for i in checklist))
    of = {kind: [t.split(":", 1)[1] for t in twins if t.startswith(f"{kind}:")] for kind in ("test", "drill", "sql", "command")}
    if "sql" in kinds and of["sql"]:
        _run_sql(cfg, of["sql"], run)
    if "command" in kinds and of["command"]:
        _run_commands(of["command"], run)
    if "drill" in kinds and of["drill"]:
        _drills(catalogue, of["drill"], run, live=live_drills)
    if "test" in kinds and of["test"]:
        _run_tests(of["test"], run)
    return run


def _cmd_checklist(args: Any) -> int:
    from resilient_etl.commands.output import emit, print_rows
    from resilient_etl.config import get_config, load_config
    from resilient_etl_devtools.drills.catalogue import load_catalogue

    catalogue = load_catalogue()
    if args.checklist_action in ("write", "check"):
        text = render(items(load_config(PROJECT_ROOT / "config" / "resilience.yaml", environ={}), catalogue))
        if args.checklist_action == "check":
            if not DOC_FILE.exists() or DOC_FILE.read_text() != text:
                print(f"{DOC_FILE} is stale: run `resilient-etl checklist write`", file=sys.stderr)
                return 1
            emit(f"{DOC_FILE} is up to date")
            return 0
        DOC_FILE.write_text(text)
        emit(f"wrote {DOC_FILE}")
        return 0
    cfg = get_config()
    checklist = items(cfg, catalogue)
    kinds = set(args.kinds.split(","))
    started = time.monotonic()
    run = run_twins(cfg, catalogue, checklist, kinds=kinds, live_drills=args.live_drills)
    if args.output in ("json", "yaml", "plain"):
        print_rows(
            [
                {
                    "section": i.section,
                    "item": i.title,
                    "twin": i.twin,
                    "passed": run.outcomes.get(i.twin),
                    "detail": run.details.get(i.twin, "not run"),
                }
                for i in checklist
            ],
            args.output,
        )
    else:
        emit(render(checklist, run.outcomes), end="")
    ran = [v for v in run.outcomes.values() if v is not None]
    failed = [t for t, v in run.outcomes.items() if v is False]
    print(f"checklist: {sum(ran)} of {len(ran)} twins passed, {len(failed)} failed, in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for twin in failed:
        print(f"FAILED {twin}: {run.details[twin]}", file=sys.stderr)
    return 1 if failed else 0


def add_checklist_command(sub: Any) -> None:
    """Add ``checklist run|write|check`` to the command line (the ``resilient-etl`` entry point calls this)."""
    from resilient_etl.commands.output import add_output_argument

    checklist = sub.add_parser(
        "checklist",
        help="the manual testing checklist: run its automated twins and print it ticked; write or check docs/testing-checklist.md",
        description=(
            "run: execute each item's twin (--kinds: test, drill, sql, command; drills are read from docs/drill-results.json "
            "unless --live-drills) and print the checklist with the boxes ticked (-o json for one row per item). "
            "write / check: regenerate docs/testing-checklist.md / exit 1 when it is stale. "
            "Exit codes: 0 every twin run passed, 1 one failed (or the doc is stale), 2 bad arguments."
        ),
    )
    checklist.add_argument("checklist_action", choices=["run", "write", "check"])
    checklist.add_argument("--kinds", default="sql,command,drill,test", help="which twins to run (default: all)")
    checklist.add_argument("--live-drills", action="store_true", help="run the drills now (minutes) instead of reading the recorded results")
    add_output_argument(checklist)
    checklist.set_defaults(func=_cmd_checklist)

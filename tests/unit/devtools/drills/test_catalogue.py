"""The drill catalogue: the shipped one covers the faults the team drills, and a bad one fails with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resilient_etl.config import load_config
from resilient_etl.exceptions import ConfigError
from resilient_etl_devtools.drills.catalogue import CATALOGUE_FILE, load_catalogue

FAST = {"postcodes-down", "warehouse-blip", "task-killed", "malformed-file", "dr-restore", "pg-failover"}


def test_the_shipped_catalogue_covers_every_fault_family() -> None:
    catalogue = load_catalogue()
    faults = {
        (s.fault.kind, getattr(s.fault, "toxic", None) or getattr(s.fault, "mode", None) or getattr(s.fault, "status", None))
        for s in catalogue.scenarios.values()
    }
    assert {("http", 503), ("http", 429), ("kill", None), ("malformed_file", None), ("bad_config", None)} <= faults
    assert {("filesystem", "full"), ("filesystem", "read_only")} <= faults
    assert {("proxy", "latency"), ("proxy", "reset_peer"), ("proxy", "down")} <= faults
    links = {s.fault.link for s in catalogue.scenarios.values() if s.fault.kind == "proxy"}
    assert {"warehouse", "redis"} <= links
    apis = {s.fault.api for s in catalogue.scenarios.values() if s.fault.kind == "http"}
    assert apis == {"postcodes_io", "companies_house"}
    assert any(s.fault.kind == "http" and s.fault.hang_seconds for s in catalogue.scenarios.values())
    assert any(s.fault.kind == "http" and s.fault.truncate for s in catalogue.scenarios.values())
    # the warehouse outage inside the retry budget recovers by itself; the one beyond it needs the runbook's clear
    outages = {s.recovery.mode for s in catalogue.scenarios.values() if s.fault.kind == "proxy" and s.fault.link == "warehouse"}
    assert outages == {"automatic", "clear"}
    assert {(s.fault.event, s.recovery.mode) for s in catalogue.scenarios.values() if s.fault.kind == "disaster"} == {
        ("warehouse_dropped", "restore_backup"),
        ("primary_lost", "failover"),
    }
    assert {n for n, s in catalogue.scenarios.items() if s.fast} == FAST


def test_every_scenario_names_a_real_category_and_runbook_section() -> None:
    catalogue = load_catalogue()
    cfg = load_config()
    runbooks = (CATALOGUE_FILE.parents[1] / "docs" / "recovery.md").read_text()
    for name, s in catalogue.scenarios.items():
        assert s.category in cfg.classification.entries(), name
        assert f"\n## {s.recovery.runbook}\n" in runbooks, name
        assert all(rpo == 0 for rpo in (s.targets.rows_lost, s.targets.rows_duplicated)), name


def _write(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(CATALOGUE_FILE.read_text())
    change(data)
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["scenarios"]["postcodes-down"]["targets"].update(rto_seconds=0), "scenarios.postcodes-down.targets.rto_seconds"),
        (lambda d: d["scenarios"]["network-cut"]["fault"].update(toxic="sever"), "scenarios.network-cut.fault.proxy.toxic"),
        (lambda d: d["scenarios"]["task-killed"].update(start="before_run"), "task-killed.start"),
        (lambda d: d["targets"]["local"].update(drilable=True), "targets.local.drilable"),
        (lambda d: d["scenarios"]["dr-restore"]["recovery"].update(mode="automatic"), "dr-restore.recovery.mode"),
    ],
)
def test_a_bad_catalogue_fails_with_the_field_named(tmp_path: Path, change, field: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load_catalogue(_write(tmp_path, change))
    assert field in str(bad.value)


def test_a_target_not_marked_drillable_is_refused() -> None:
    catalogue = load_catalogue()
    with pytest.raises(ConfigError, match="not drillable") as refused:
        catalogue.target("production")
    assert refused.value.field == "targets.production.drillable"
    assert catalogue.target("local").drillable

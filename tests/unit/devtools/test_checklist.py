"""The testing checklist: every failure type, category, quality rule and health check has an item, every item a twin that exists, and the committed doc is current."""

from __future__ import annotations

import dataclasses

from resilient_etl.config import load_config
from resilient_etl_devtools import checklist
from resilient_etl_devtools.drills.catalogue import load_catalogue
from resilient_etl_devtools.paths import PROJECT_ROOT

CFG = load_config(PROJECT_ROOT / "config" / "resilience.yaml", environ={})


def test_every_item_names_a_twin_that_exists() -> None:
    catalogue = load_catalogue()
    assert checklist.missing_twins(checklist.items(CFG, catalogue), catalogue) == []


def test_a_missing_or_renamed_twin_is_named() -> None:
    catalogue = load_catalogue()
    item = checklist.items(CFG, catalogue)[0]
    broken = [
        dataclasses.replace(item, title="gone test", twin="test:tests/unit/pipeline/test_quality.py::test_that_does_not_exist"),
        dataclasses.replace(item, title="gone drill", twin="drill:meteor-strike"),
        dataclasses.replace(item, title="gone sql", twin="sql:nothing"),
        dataclasses.replace(item, title="no twin", twin="by-hand:look at it"),
    ]
    assert checklist.missing_twins(broken, catalogue) == [
        "gone test: no test tests/unit/pipeline/test_quality.py::test_that_does_not_exist",
        "gone drill: no drill meteor-strike",
        "gone sql: no SQL check nothing",
        "no twin: no twin",
    ]


def test_every_failure_type_category_rule_and_health_check_has_an_item() -> None:
    from resilient_etl.health.checks import default_checks

    items = checklist.items(CFG, load_catalogue())
    titles = " ".join(i.title for i in items)
    assert {i.target for i in items if i.kind == "drill"} == set(load_catalogue().scenarios)
    assert all(f"`{c}`" in titles for c in CFG.classification.entries())
    assert all(f"rule `{r}`" in titles for r in type(CFG.quality).model_fields)
    assert all(f"`{c}` is in the health document" in titles for c in default_checks(CFG))
    assert {i.target for i in items if i.kind == "sql"} == set(checklist.SQL_CHECKS)


def test_the_committed_checklist_is_current_and_ticks_what_ran() -> None:
    items = checklist.items(CFG, load_catalogue())
    assert checklist.DOC_FILE.read_text() == checklist.render(items), "stale: run `resilient-etl checklist write`"
    ticked = checklist.render(items, {items[0].twin: True, items[1].twin: False})
    assert f"- [x] **{items[0].title}**" in ticked and f"- [ ] **FAILED** **{items[1].title}**" in ticked and "- [?]" in ticked

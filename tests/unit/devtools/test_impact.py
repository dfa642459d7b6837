"""The business impact model: one scenario recomputed by hand from the config and its drill, the cut-off and penalty rules, history over priors, and the committed docs current."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from resilient_etl.config import load_config, parse_config
from resilient_etl.exceptions import ConfigError
from resilient_etl_devtools import impact_report
from resilient_etl_devtools.drills.catalogue import load_catalogue
from resilient_etl_devtools.drills.cli import RESULTS_FILE
from resilient_etl_devtools.impact import business_share, frequencies, occurrence_cost, risks
from resilient_etl_devtools.paths import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "config" / "resilience.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG, environ={})


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    return {r["scenario"]: r for r in json.loads(RESULTS_FILE.read_text())}


def test_one_scenario_costs_what_the_config_and_its_drill_say(cfg, results) -> None:
    """warehouse-outage by hand: SEV1 (database_unavailable), recovered by a clear, after the 02:00 load's usual end."""
    model, drill = cfg.business_impact, results["warehouse-outage"]
    assert cfg.classification.entries()["database_unavailable"].severity == "SEV1"
    hours = drill["rto_s"] / 3600 + model.response_minutes["SEV1"] / 60  # measured recovery + a person's response
    # 02:20 + ~16 min is before business hours (08:00): each consumer pays its off-hours share
    procurement = hours * model.consumers["procurement"].cost_per_hour_late * model.consumers["procurement"].off_hours_factor
    finance = hours * model.consumers["finance"].cost_per_hour_late * model.consumers["finance"].off_hours_factor
    people = model.people_cost_per_hour * model.recovery_hours["clear"]
    cost = occurrence_cost(cfg, load_catalogue(), drill)
    assert set(cost.lateness) == {"procurement", "finance"}  # compliance is not affected by a warehouse outage
    assert cost.lateness["procurement"] == round(procurement, 2) and cost.lateness["finance"] == round(finance, 2)
    assert cost.cutoff == {} and cost.penalties == {} and cost.people == people and cost.rows == 0
    assert cost.total == pytest.approx(round(procurement, 2) + round(finance, 2) + people)
    risk = next(r for r in risks(cfg, load_catalogue(), list(results.values())) if r.cost.scenario == "warehouse-outage")
    assert risk.per_year == model.priors_per_year["warehouse-outage"] and risk.expected_annual == pytest.approx(cost.total * risk.per_year)


def test_a_long_outage_misses_the_cutoff_then_owes_the_penalty(cfg, results) -> None:
    catalogue = load_catalogue()
    model = cfg.business_impact
    eight_hours = occurrence_cost(cfg, catalogue, {**results["warehouse-outage"], "rto_s": 8 * 3600})
    assert eight_hours.cutoff == {"procurement": model.consumers["procurement"].missed_cutoff_cost} and eight_hours.penalties == {}
    # past 08:00 the hours cost their full business-hours rate
    assert eight_hours.lateness["procurement"] > 8 * 400 * 0.1
    day_and_more = occurrence_cost(cfg, catalogue, {**results["warehouse-outage"], "rto_s": 30 * 3600})
    assert list(day_and_more.penalties.values()) == [model.penalties[0].amount]
    assert business_share(model, dt.time(7, 0), 2.0) == pytest.approx(0.5)


def test_the_incident_history_replaces_the_priors_once_it_covers_a_month(cfg) -> None:
    catalogue = load_catalogue()
    database = [n for n, s in catalogue.scenarios.items() if s.category == "database_unavailable"]
    year = frequencies(cfg, catalogue, {"database_unavailable": 8}, days=365)
    assert {year[n][0] for n in database} == {round(8 / len(database), 3)}
    assert year["postcodes-down"] == (cfg.business_impact.priors_per_year["postcodes-down"], "prior")  # no history for it
    week = frequencies(cfg, catalogue, {"database_unavailable": 8}, days=7)
    assert week["warehouse-outage"][1] == "prior"  # too short a history to annualise


def test_a_bad_cost_model_fails_with_the_field_named(tmp_path) -> None:
    data = yaml.safe_load(CONFIG.read_text())
    data["business_impact"]["business_hours"] = ["18:00", "08:00"]
    with pytest.raises(ConfigError, match="business_impact"):
        parse_config(data, base_dir=CONFIG.parent)
    data = yaml.safe_load(CONFIG.read_text())
    data["business_impact"]["consumers"]["finance"]["affected_by"] = ["weather"]
    with pytest.raises(ConfigError, match=r"business_impact\.consumers\.finance\.affected_by"):
        parse_config(data, base_dir=CONFIG.parent)


def test_the_committed_assessment_and_heat_map_are_current(cfg, results) -> None:
    for path, text in impact_report.generated(cfg, load_catalogue(), list(results.values())).items():
        assert path.read_text() == text, f"{path.name} is stale: run `resilient-etl impact --write`"
    top = [r.cost.scenario for r in risks(cfg, load_catalogue(), list(results.values()))[: impact_report.TOP]]
    assert set(top) <= {m.risk for m in cfg.business_impact.mitigations}  # a recommendation for every top risk
    doc = impact_report.DOC_FILE.read_text()
    assert "![Probability x impact heat map](business-impact.svg)" in doc and "## Mitigations for the top 5 risks" in doc
    assert "No mitigation declared yet" not in doc
    assert impact_report.SVG_FILE.read_text().lstrip().startswith("<?xml")


def test_the_command_ranks_the_risks(capsys) -> None:
    from resilient_etl.cli import main

    assert main(["impact", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and [r["expected_annual_cost"] for r in rows] == sorted((r["expected_annual_cost"] for r in rows), reverse=True)
    assert {r["scenario"] for r in rows} == set(load_catalogue().scenarios)

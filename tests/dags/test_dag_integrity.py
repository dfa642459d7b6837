"""Every DAG parses, and carries retries, an owner, tags and docs; a bad config is an import error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from airflow.dag_processing.dagbag import BundleDagBag

from _support.paths import CONFIG_FILE as DEFAULT_CONFIG_PATH

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> BundleDagBag:
    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)


def test_no_import_errors(dagbag: BundleDagBag) -> None:
    assert dagbag.import_errors == {}
    assert "company_enrichment" in dagbag.dags


def test_every_dag_has_owner_retries_tags_and_docs(dagbag: BundleDagBag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", (dag_id, task.task_id)
            # a drill is measured once: a retry would measure a different failure
            assert task.retries == 0 if dag_id in ("chaos_drill", "dr_drill") else task.retries >= 1, (dag_id, task.task_id)


def test_company_enrichment_shape_and_params(dagbag: BundleDagBag) -> None:
    dag = dagbag.dags["company_enrichment"]
    assert {t.task_id for t in dag.tasks} == {"extract", "validate", "enrich_postcodes", "enrich_companies", "load", "reconcile", "reenrich_backlog"}
    assert dag.get_task("load").upstream_task_ids == {"enrich_postcodes", "enrich_companies"}
    assert dag.get_task("reconcile").upstream_task_ids == {"load"}
    assert dag.params["full_refresh"] is False
    assert dag.params["landing_dir"] is None
    assert dag.max_active_runs == 1
    extract = dag.get_task("extract")
    assert "landing_dir" in extract.template_fields
    assert extract.retry_exponential_backoff > 0 and extract.max_retry_delay.total_seconds() == 600


def test_bad_config_fails_the_import_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["load"]["batch_size"] = "lots"
    bad = tmp_path / "resilience.yaml"
    bad.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RESILIENT_ETL_CONFIG", str(bad))
    bag = BundleDagBag(dag_folder=str(DAGS / "company_enrichment.py"), bundle_path=DAGS)
    assert "company_enrichment" not in bag.dags
    (message,) = bag.import_errors.values()
    assert "load.batch_size" in message and "'lots'" in message


def test_parsing_does_not_import_api_clients() -> None:
    """API clients, pybreaker and Redis cost ~0.2 s per parse; operators import them only when they run."""
    import subprocess
    import sys

    probe = (
        "import sys; from pathlib import Path; from airflow.dag_processing.dagbag import BundleDagBag;"
        f"d = Path({str(DAGS)!r}); bag = BundleDagBag(dag_folder=str(d), bundle_path=d);"
        "assert not bag.import_errors, bag.import_errors;"
        "print(sorted(m for m in sys.modules if m.startswith(('airflow.providers.http.hooks', 'aiohttp', 'requests_toolbelt', 'pybreaker', 'redis'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_chaos_drill_lists_every_scenario_and_only_drillable_targets_in_its_form(dagbag: BundleDagBag) -> None:
    from resilient_etl_devtools.drills.catalogue import load_catalogue

    catalogue = load_catalogue()
    params = dagbag.dags["chaos_drill"].params
    assert params.get_param("scenario").schema["enum"] == list(catalogue.scenarios)
    assert params.get_param("target").schema["enum"] == ["local"]  # production is not drillable
    assert dagbag.dags["chaos_drill"].schedule is None  # manual trigger only


def test_dr_drill_runs_the_configured_drills_one_after_the_other_against_their_objectives(dagbag: BundleDagBag) -> None:
    from resilient_etl.config import get_config

    dr = get_config().disaster_recovery
    dag = dagbag.dags["dr_drill"]
    tasks = [dag.get_task(f"drill_{s.replace('-', '_')}") for s in dr.drills.scenarios]
    assert [t.scenario for t in tasks] == ["dr-restore", "pg-failover"] and dag.timetable.expression == dr.drills.schedule
    assert tasks[1].upstream_task_ids == {tasks[0].task_id} and tasks[1].trigger_rule == "all_done"
    assert all(t.rto_objective_seconds == dr.objectives["warehouse"].rto_minutes * 60 for t in tasks)
    assert all(t.target == dr.drills.target and t.record_warehouse_conn_id == "warehouse_default" for t in tasks)


def test_each_dag_is_tagged_for_what_it_does(dagbag: BundleDagBag) -> None:
    """Only the pipeline is about suppliers and enrichment; the ops DAGs say what they do."""
    tags = {dag_id: set(dag.tags) for dag_id, dag in dagbag.dags.items()}
    assert all("resilient-etl" in t for t in tags.values())
    assert {"suppliers", "enrichment"} <= tags["company_enrichment"]
    for dag_id, own in {
        "incident_escalation": "alerting",
        "pipeline_health": "health",
        "warehouse_maintenance": "maintenance",
        "chaos_drill": "drills",
        "warehouse_backup": "backup",
        "dr_drill": "disaster-recovery",
    }.items():
        assert own in tags[dag_id] and not tags[dag_id] & {"suppliers", "enrichment"}, (dag_id, tags[dag_id])


def test_the_backlog_calls_each_api_with_its_own_timeout_and_retry_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resilient_etl.config import get_config

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["apis"]["postcodes_io"]["timeout_seconds"] = 3
    data["apis"]["companies_house"]["timeout_seconds"] = 7
    (tmp_path / "resilience.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RESILIENT_ETL_CONFIG", str(tmp_path / "resilience.yaml"))
    # the hooks come with their shared breakers, whose state is kept in the warehouse
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    for conn_id in ("POSTCODES_IO_DEFAULT", "COMPANIES_HOUSE_DEFAULT"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"}))
    bag = BundleDagBag(dag_folder=str(DAGS / "company_enrichment.py"), bundle_path=DAGS)
    postcodes, companies = bag.dags["company_enrichment"].get_task("reenrich_backlog").hooks()
    cfg = get_config()
    assert (postcodes.timeout, companies.timeout) == (3, 7)
    assert postcodes.retry_policy == cfg.retry.policy("postcodes_io") and postcodes.retry_policy.dependency == "postcodes_io"
    assert companies.retry_policy == cfg.retry.policy("companies_house")
    assert (postcodes.breaker.policy, companies.breaker.policy) == (cfg.breakers.policy("postcodes_io"), cfg.breakers.policy("companies_house"))

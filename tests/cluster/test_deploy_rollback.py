"""
Deploy and roll back on the cluster: the previous release runs again after ``db downgrade``, the current
one is deployed over it with ``db upgrade``, and no row loaded by any release is lost on the way.

Runs after test_celery_cluster.py on the same cluster (whose runs are the data that must survive).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from _support.cluster import PG, RunningCluster
from _support.paths import PREVIOUS_RELEASE, REPO
from resilient_etl.hooks.warehouse import migrations
from resilient_etl_devtools.cluster import Cluster

HEAD = migrations.head()  # the previous release (PREVIOUS_RELEASE) knows only the baseline, 0001
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.airflow_run, pytest.mark.timeout(900)]


@pytest.fixture
def previous_release(tmp_path: Path) -> Iterator[Path]:
    """The previous release checked out beside this one (``git worktree``)."""
    tree = tmp_path / "previous"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), PREVIOUS_RELEASE], cwd=REPO, check=True, capture_output=True)
    yield tree
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False, capture_output=True)


def _cli(cluster: Cluster, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """
    Run this release's ``resilient-etl ARGS`` against that deployment (its environment), as the operator deploying it would.

    :param config: the config file instead of the deployment's: a release is installed with its own config/
        (docs/deployment.md), which the previous release's code may not read, nor this release the previous config
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RESILIENT_ETL"))}
    env.update(cluster.environment())
    if config is not None:
        env["RESILIENT_ETL_CONFIG"] = str(config)
    env.pop("PYTHONPATH", None)  # not the previous release's package the cluster may be running
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(Path(sys.executable).with_name("resilient-etl")), *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _rows(running: RunningCluster) -> dict[str, set[tuple]]:
    conn = psycopg2.connect(f"{PG}/{running.settings.warehouse_db}")
    try:
        with conn.cursor() as cur:
            # the supplier ids only: a later file naming the same supplier updates its row (an upsert), which is not a loss
            cur.execute("SELECT supplier_id FROM suppliers")
            suppliers = set(cur.fetchall())
            cur.execute("SELECT run_id, source_file, line_number, error_category FROM quarantine")
            quarantine = set(cur.fetchall())
            cur.execute("SELECT run_id, rows_in, rows_loaded, rows_quarantined, rows_pending FROM pipeline_runs")
            runs = set(cur.fetchall())
    finally:
        conn.close()
    return {"suppliers": suppliers, "quarantine": quarantine, "pipeline_runs": runs}


def _redeploy(running: RunningCluster, code_dir: Path, *, dags: Path | None) -> tuple[Cluster, float]:
    """Stop every component and start them on ``code_dir``'s release; return the cluster and the seconds it took."""
    t0 = time.monotonic()
    running.cluster.down()
    cluster = Cluster(dataclasses.replace(running.settings, code_dir=code_dir, dags_folder=dags), out=lambda _: None)
    assert cluster.up(timeout=300)
    running.cluster = cluster
    return cluster, time.monotonic() - t0


def _run(running: RunningCluster, seed: int) -> str:
    landing = running.settings.state_dir / "drops" / f"release-{seed}"
    landing.mkdir(parents=True)
    dev = str(Path(sys.executable).with_name("resilient-etl-dev"))
    subprocess.run([dev, "sample", str(landing / "suppliers.csv"), "--rows", "100", "--seed", str(seed)], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while running.api.request("GET", "/api/v2/dags/company_enrichment")[0] != 200:  # parsed by the new dag-processor
        assert time.monotonic() < deadline
        time.sleep(1)
    run_id = running.trigger("company_enrichment", {"landing_dir": str(landing)})
    assert running.wait_run("company_enrichment", run_id) == "success", running.task_instances("company_enrichment", run_id)
    return run_id


def test_roll_back_to_the_previous_release_then_deploy_the_current_one_over_it(running_cluster: RunningCluster, previous_release: Path) -> None:
    current_dags = running_cluster.settings.dags_folder
    before = _rows(running_cluster)
    if not before["suppliers"]:  # run on its own: make the current release's data first
        _run(running_cluster, seed=5)
        before = _rows(running_cluster)

    # Roll back: stop, take the schema back with the code that knows the migration, start the old code
    running_cluster.cluster.down()
    t0 = time.monotonic()
    down = _cli(running_cluster.cluster, "db", "downgrade", "0001")
    assert down.returncode == 0 and f"{HEAD} -> 0001" in down.stdout, down.stdout + down.stderr
    downgrade_s = time.monotonic() - t0
    _, rollback_s = _redeploy(running_cluster, previous_release, dags=None)
    old_run = _run(running_cluster, seed=3)
    after_rollback = _rows(running_cluster)
    for table, rows in before.items():
        assert rows <= after_rollback[table], table  # nothing lost
    assert any(r[0] == old_run for r in after_rollback["pipeline_runs"])

    # Deploy the current release over it: stop, upgrade the schema, start, check, run
    running_cluster.cluster.down()
    t0 = time.monotonic()
    up = _cli(running_cluster.cluster, "db", "upgrade", config=REPO / "config" / "resilience.yaml")  # the release installed first
    assert up.returncode == 0 and f"0001 -> {HEAD}" in up.stdout, up.stdout + up.stderr
    upgrade_s = time.monotonic() - t0
    cluster, deploy_s = _redeploy(running_cluster, REPO, dags=current_dags)
    check = _cli(cluster, "deploy", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout and f"PASS  warehouse migrations: at head {HEAD}" in check.stdout
    assert "PASS  workers: 2 answered: celery@worker-1, celery@worker-2" in check.stdout
    new_run = _run(running_cluster, seed=4)
    final = _rows(running_cluster)
    for table, rows in after_rollback.items():
        assert rows <= final[table], table
    assert any(r[0] == new_run for r in final["pipeline_runs"])
    print(
        f"\nrollback: db downgrade {downgrade_s:.1f} s, previous release up {rollback_s:.1f} s; "
        f"deploy: db upgrade {upgrade_s:.1f} s, current release up {deploy_s:.1f} s; "
        f"{len(final['suppliers'])} suppliers, {len(final['pipeline_runs'])} runs kept"
    )

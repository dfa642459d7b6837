"""Run company_enrichment for real (``dag.test()``) in the test process."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_dag(logical_date: Any = None, **conf: object) -> Any:
    """Run company_enrichment once with ``conf`` (a logical date already run: that run cleared and run again)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    dags = Path(__file__).resolve().parents[2] / "dags"
    bag = BundleDagBag(dag_folder=str(dags / "company_enrichment.py"), bundle_path=dags)
    assert bag.import_errors == {}
    kwargs = {"logical_date": logical_date, "run_after": logical_date} if logical_date is not None else {}
    # dag.test with the logical date of an existing run clears that run and runs it again: a UI "clear"
    return bag.dags["company_enrichment"].test(run_conf=conf or None, **kwargs)

"""
Run ``company_enrichment`` once in this process (``dag.test``): ``python -m resilient_etl_devtools.drills.dagtest LOGICAL_DATE``.

``airflow dags test`` gives every invocation a new run id (its run_after is "now"), so running it again
for a killed run starts a new run rather than clearing the old one. Here ``run_after`` is the logical
date, so the same logical date is the same run id: the run is cleared and resumes from its committed
checkpoints and staged rows, exactly as a clear in the UI. Exit 0 when the run succeeded, 1 otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from airflow.dag_processing.dagbag import BundleDagBag

    when = dt.datetime.fromisoformat(argv[0])
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag = BundleDagBag(dag_folder=str(dags / "company_enrichment.py"), bundle_path=dags)
    if bag.import_errors:
        for path, error in bag.import_errors.items():
            print(f"DAG import error in {path}:\n{error}", file=sys.stderr)
        return 2
    run = bag.dags["company_enrichment"].test(logical_date=when, run_after=when)
    print(f"run {run.run_id}: {run.state}")
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

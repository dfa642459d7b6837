"""
DAG parse time: the project's DAG folder vs a baseline DAG with the same Airflow imports and no provider.

Each parse runs in a fresh interpreter (as the dag-processor's parsing does), best of N, and prints the
ratio side by side.  Usage: python bench/parse_time.py [runs]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = """
from __future__ import annotations
import datetime as dt
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG(dag_id="baseline", schedule=None, start_date=dt.datetime(2026, 1, 1), tags=["x"]) as dag:
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""
PROBE = """
import sys, time
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
folder = Path(sys.argv[1])
t = time.perf_counter()
bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder)
elapsed = time.perf_counter() - t
assert not bag.import_errors, bag.import_errors
print(f"{elapsed:.4f} {len(bag.dags)}")
"""


def parse_seconds(folder: Path, runs: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    # the dag-processor runs with bytecode caches; this machine sets PYTHONDONTWRITEBYTECODE, which
    # would make every parse recompile the provider's sources
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, check=True)  # warm-up
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, check=True)
        seconds, count = out.stdout.split()[-2:]
        best = min(best, float(seconds))
    return best, int(count)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "baseline.py").write_text(BASELINE)
        base, _ = parse_seconds(Path(tmp), runs)
    ours, dags = parse_seconds(REPO / "dags", runs)
    print(f"{'what':<28}{'best of ' + str(runs):>14}")
    print(f"{'baseline DAG (1 DAG)':<28}{base * 1000:>11.0f} ms")
    print(f"{'dags/ (' + str(dags) + ' DAGs)':<28}{ours * 1000:>11.0f} ms")
    print(f"ratio dags/ : baseline = {ours / base:.2f}")


if __name__ == "__main__":
    main()

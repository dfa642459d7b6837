"""Run the loader in its own process (to be killed with SIGKILL by a test). Usage: python load_worker.py <run_id>"""

from __future__ import annotations

import sys

from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.load import load

if __name__ == "__main__":
    print(load(WarehouseHook(), run_id=sys.argv[1], batch_size=200, chunk_size=50), flush=True)

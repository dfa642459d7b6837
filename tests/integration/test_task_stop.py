"""A task Airflow stops (SIGTERM: the task runner calls ``on_kill``) ends its quota wait within seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SCRIPT = r"""
import signal, sys, time
from resilient_etl.resilience.ratelimit import RateLimitStatus
from resilient_etl.operators.enrich import EnrichCompaniesOperator
from resilient_etl.resilience.ratelimit import QuotaPacer
from resilient_etl.resilience.stopping import StopRequested
from resilient_etl.resilience.stores.memory import MemoryStore

op = EnrichCompaniesOperator(task_id="enrich_companies")
signal.signal(signal.SIGTERM, lambda *_: op.on_kill())  # what Airflow's task runner does on SIGTERM
pacer = QuotaPacer(MemoryStore(), "companies_house:k")
pacer.after_response(RateLimitStatus(limit=600, remain=0, reset_at=time.time() + 300, window="5m"))  # quota spent
print("waiting", flush=True)
try:
    pacer.before_request()
except StopRequested as exc:
    print(f"stopped: {exc}", flush=True)
    sys.exit(0)
print("slept through", flush=True)
sys.exit(1)
"""


def test_sigterm_ends_a_five_minute_quota_wait_within_seconds(tmp_path) -> None:
    err_log = tmp_path / "stderr.log"
    with err_log.open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=err_file, text=True)
    try:
        seen = [proc.stdout.readline() for _ in range(1)]
        while seen[-1] and seen[-1].strip() != "waiting" and len(seen) < 50:  # Airflow may log to stdout first
            seen.append(proc.stdout.readline())
        assert seen[-1].strip() == "waiting", "".join(seen) + err_log.read_text()[-3000:]
        time.sleep(0.5)  # inside the 300 s wait
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped: stop requested during a 300" in out, out + err_log.read_text()[-3000:]
    assert took < 3, took

"""
One worker process for the shared-breaker tests: get ready, print ``ready``, wait for ``go`` on stdin
(so every worker calls at the same moment), make one call to Companies House through the hook and its shared
breaker, print what happened (ok / refused / failed <status>).

Usage: python breaker_worker.py <store: sql|redis> <company number>
"""

from __future__ import annotations

import sys

from resilient_etl.config import BreakerPolicy, RetryPolicy
from resilient_etl.exceptions import ApiError, BreakerOpenError
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.shared_state import shared_store
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.resilience.breaker import SharedCircuitBreaker

POLICY = BreakerPolicy(name="companies_house", fail_max=3, reset_timeout_seconds=30)


def main() -> None:
    kind, number = sys.argv[1], sys.argv[2]
    store = shared_store(kind, warehouse=WarehouseHook(), redis_conn_id="breaker_store")
    breaker = SharedCircuitBreaker(POLICY, store)
    hook = CompaniesHouseHook(retry_policy=RetryPolicy(dependency="companies_house", max_attempts=1), breaker=breaker)
    _ = hook.session  # resolve the connection before the start line
    store.read(POLICY.name)
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        hook.get_company(number)
        print("ok")
    except BreakerOpenError:
        print("refused")
    except ApiError as exc:
        print(f"failed {exc.status_code}")


if __name__ == "__main__":
    main()

"""
Run the checks: :func:`check_health` runs every check in parallel, each in a daemon thread bounded by
``health.timeout_seconds``. A dependency that hangs reports ``fail`` at its timeout (the thread is
abandoned, never waited for); an exception inside a check becomes that check's ``fail`` with the
error, never a crash of the report. The overall status is the worst of the checks.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from resilient_etl.alerting.channels import redact
from resilient_etl.health.checks import Check, default_checks
from resilient_etl.health.model import FAIL, Observation, document

if TYPE_CHECKING:
    from resilient_etl.config.models import ResilienceConfig


def _failed(name: str, output: str) -> dict[str, list[Observation]]:
    return {f"{name}:status": [Observation(name, "component", FAIL, output=output)]}


def run_checks(checks: dict[str, Check], timeout: float) -> dict[str, list[Observation]]:
    """
    Run ``checks`` in parallel; a check still running at ``timeout`` seconds, or raising, fails.

    :return: the ``checks`` map of the document (check name -> observations)
    """
    results: dict[str, dict[str, list[Observation]]] = {}
    errors: dict[str, BaseException] = {}

    def runner(name: str, check: Check) -> None:
        try:
            results[name] = check()
        except BaseException as exc:  # boundary: a check's failure is its result, never the report's
            errors[name] = exc

    threads = {name: threading.Thread(target=runner, args=(name, check), daemon=True, name=f"health-{name}") for name, check in checks.items()}
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + timeout
    out: dict[str, list[Observation]] = {}
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            out |= _failed(name, f"no answer within {timeout:g} s (timeout)")
        elif name in errors:
            exc = errors[name]
            out |= _failed(name, _redacted(f"{type(exc).__name__}: {exc}"))
        else:
            out |= results[name]
    return out


def _redacted(text: str) -> str:
    return redact(text, [])[:500]  # an error text may carry a URL with credentials


def check_health(cfg: ResilienceConfig | None = None, *, checks: dict[str, Check] | None = None) -> dict[str, Any]:
    """
    Check every component and return the ``application/health+json`` document.

    :param cfg: the configuration (default: the one in force)
    :param checks: the checks to run (default: :func:`default_checks`)
    """
    if cfg is None:
        from resilient_etl.config import get_config

        cfg = get_config()
    return document(run_checks(checks if checks is not None else default_checks(cfg), cfg.health.timeout_seconds))

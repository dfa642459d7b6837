"""
A stop request for the waits of this process: quota pacing and retry backoff end at once when asked.

Airflow's task runner answers SIGTERM (a user marking the task, a timeout, a worker shutdown) by
calling the operator's ``on_kill`` and nothing more: a task asleep in ``time.sleep`` for a quota
window would go on sleeping for minutes. The operators call :func:`request_stop` from ``on_kill``;
every wait of the resilience layer sleeps through :func:`sleep`, which then raises.
"""

from __future__ import annotations

import threading

_STOP = threading.Event()


class StopRequested(Exception):
    """
    The task is being stopped: a wait was cut short.

    Not an ``InterruptedError``: that is an ``OSError``, which the classification reads as a
    filesystem failure.
    """


def request_stop() -> None:
    """Ask every current and later wait of this process to end (``on_kill``)."""
    _STOP.set()


def clear_stop() -> None:
    """Forget a stop request (tests, and a process that runs another task afterwards)."""
    _STOP.clear()


def sleep(seconds: float) -> None:
    """
    Sleep ``seconds``, unless a stop is requested before or during the wait.

    :raises StopRequested: a stop was requested
    """
    if _STOP.wait(max(0.0, seconds)):
        raise StopRequested(f"stop requested during a {seconds:.1f}s wait")

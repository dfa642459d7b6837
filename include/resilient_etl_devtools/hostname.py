"""The hostname a cluster worker reports for its task instances (``[core] hostname_callable``).

Two workers on one machine would otherwise both report the machine's name; imported by every task
process, so it imports nothing heavy.
"""

from __future__ import annotations

import os
import socket

HOSTNAME_ENV = "RESILIENT_ETL_WORKER_HOSTNAME"


def worker_hostname() -> str:
    """Return this worker's configured hostname (``$RESILIENT_ETL_WORKER_HOSTNAME``), else the FQDN."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()

"""Run the sandbox apps on loopback with uvicorn, in background threads of the calling process."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from resilient_etl_devtools.sandbox import companies_app, data, postcodes_app
from resilient_etl_devtools.sandbox.faults import FaultRegistry

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the host process owns signals
        pass


@dataclass
class RunningApp:
    """One app served on loopback."""

    app: Any
    port: int
    registry: FaultRegistry
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; return once the socket accepts connections."""
        config = uvicorn.Config(
            self.app, host=LOOPBACK, port=self.port, log_level="warning", access_log=False, timeout_graceful_shutdown=1, lifespan="off"
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"sandbox server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Sandbox:
    """
    Both sandbox APIs.

    :param postcodes_port: port for postcodes.io (0 picks a free one)
    :param companies_port: port for Companies House (0 picks a free one)
    :param api_keys: accepted Companies House keys
    :param ch_limit: Companies House requests per window
    :param ch_window_seconds: Companies House quota window
    :param companies_count: the size of the company register (scale benchmarks raise it)
    :param synthetic_postcodes: synthetic postcodes served besides the real seed (scale benchmarks)
    """

    postcodes_port: int = 0
    companies_port: int = 0
    api_keys: tuple[str, ...] = (companies_app.DEFAULT_API_KEY,)
    ch_limit: int = companies_app.DEFAULT_LIMIT
    ch_window_seconds: float = companies_app.DEFAULT_WINDOW_SECONDS
    companies_count: int = data.DEFAULT_COMPANY_COUNT
    synthetic_postcodes: int = 0
    postcodes: RunningApp = field(init=False)
    companies: RunningApp = field(init=False)

    def __post_init__(self) -> None:
        pc_registry, ch_registry = FaultRegistry(), FaultRegistry()
        self.postcodes = RunningApp(
            postcodes_app.create_app(pc_registry, synthetic_postcodes=self.synthetic_postcodes), self.postcodes_port or free_port(), pc_registry
        )
        self.limiter = companies_app.RateLimiter(limit=self.ch_limit, window_seconds=self.ch_window_seconds)
        self.companies = RunningApp(
            companies_app.create_app(api_keys=self.api_keys, limiter=self.limiter, registry=ch_registry, companies=self.companies_count),
            self.companies_port or free_port(),
            ch_registry,
        )

    def start(self) -> Sandbox:
        """Start both servers."""
        self.postcodes.start()
        self.companies.start()
        return self

    def stop(self) -> None:
        """Stop both servers."""
        self.postcodes.stop()
        self.companies.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""
Runtime fault control for the sandbox servers.

Faults are set per endpoint name (``lookup``, ``bulk``, ``company``, ``search``… or ``*`` for all)
through the admin API ``/__sandbox/faults/{endpoint}`` and applied by an ASGI middleware, so a test can
make the real HTTP server answer 503 bursts, 429s, slow or hanging responses, dropped connections and
truncated JSON bodies.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FaultSpec(BaseModel):
    """
    One endpoint's fault.

    :param status: answer with this HTTP status instead of the real response
    :param rate: probability (0..1) that a request is hit
    :param count: hit only the next ``count`` requests (a burst), then heal
    :param latency_ms: delay added before answering
    :param hang_seconds: stall this long before answering (set past the client timeout to hang)
    :param drop: start a response, then drop the connection mid-body
    :param truncate: send the real response with its JSON body cut in half
    :param retry_after: ``Retry-After`` header value (seconds) sent with ``status``
    """

    model_config = ConfigDict(extra="forbid")

    status: int | None = Field(None, ge=100, le=599)
    rate: float = Field(1.0, ge=0, le=1)
    count: int | None = Field(None, ge=0)
    latency_ms: int = Field(0, ge=0)
    hang_seconds: float = Field(0, ge=0)
    drop: bool = False
    truncate: bool = False
    retry_after: int | None = Field(None, ge=0)


class FaultRegistry:
    """Thread-safe store of faults and per-endpoint request counts."""

    def __init__(self, seed: int = 7) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, FaultSpec] = {}
        self._remaining: dict[str, int | None] = {}
        self._rng = random.Random(seed)
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def set(self, endpoint: str, spec: FaultSpec) -> None:
        """Set (replace) the fault for ``endpoint``."""
        with self._lock:
            self._faults[endpoint] = spec
            self._remaining[endpoint] = spec.count

    def clear(self, endpoint: str | None = None) -> None:
        """Remove one endpoint's fault, or all faults and counters."""
        with self._lock:
            if endpoint is None:
                self._faults.clear()
                self._remaining.clear()
                self.requests.clear()
                self.injected.clear()
            else:
                self._faults.pop(endpoint, None)
                self._remaining.pop(endpoint, None)

    def snapshot(self) -> dict[str, Any]:
        """Return faults in force and request counts, for the admin API."""
        with self._lock:
            return {
                "faults": {k: v.model_dump(exclude_defaults=True) for k, v in self._faults.items()},
                "remaining": dict(self._remaining),
                "requests": dict(self.requests),
                "injected": dict(self.injected),
            }

    def draw(self, endpoint: str) -> FaultSpec | None:
        """Count a request to ``endpoint`` and return the fault to apply to it, if any."""
        with self._lock:
            self.requests[endpoint] += 1
            key = endpoint if endpoint in self._faults else "*" if "*" in self._faults else None
            if key is None:
                return None
            remaining = self._remaining.get(key)
            if remaining is not None and remaining <= 0:
                return None
            if self._rng.random() >= self._faults[key].rate:
                return None
            if remaining is not None:
                self._remaining[key] = remaining - 1
            self.injected[endpoint] += 1
            return self._faults[key]


class DroppedConnection(Exception):
    """Raised inside the server to make uvicorn abort a half-sent response."""


Send = Callable[[dict[str, Any]], Awaitable[None]]


class FaultMiddleware:
    """
    ASGI middleware applying the registry's faults to an app.

    :param app: the ASGI app
    :param registry: where faults are set
    :param endpoint_of: maps (method, path) to an endpoint name
    :param error_body: builds the API's own error body for an injected status
    """

    def __init__(
        self, app: Any, *, registry: FaultRegistry, endpoint_of: Callable[[str, str], str], error_body: Callable[[int], dict[str, Any]]
    ) -> None:
        self.app = app
        self.registry = registry
        self.endpoint_of = endpoint_of
        self.error_body = error_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/__sandbox"):
            await self.app(scope, receive, send)
            return
        fault = self.registry.draw(self.endpoint_of(scope["method"], scope["path"]))
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hang_seconds:
            await asyncio.sleep(fault.hang_seconds)
        if fault.drop:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]}
            )
            await send({"type": "http.response.body", "body": b'{"status":200,"res', "more_body": True})
            raise DroppedConnection("sandbox fault: connection dropped mid-response")
        if fault.status is not None:
            body = json.dumps(self.error_body(fault.status)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if fault.retry_after is not None:
                headers.append((b"retry-after", str(fault.retry_after).encode()))
            await send({"type": "http.response.start", "status": fault.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if fault.truncate:
            await self.app(scope, receive, _truncating(send))
            return
        await self.app(scope, receive, send)


def _truncating(send: Send) -> Send:
    """Wrap ``send`` so the response body is buffered and sent cut in half, with a matching length."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        cut = body[: max(1, len(body) // 2)]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": cut})

    return wrapped

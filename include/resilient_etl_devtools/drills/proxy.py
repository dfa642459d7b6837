"""
A TCP fault proxy with Toxiproxy's verbs, for drills against a real deployment.

A :class:`FaultProxy` listens on loopback and forwards to its upstream (an API, the warehouse, Redis).
One fault ("toxic") at a time: ``latency`` (each chunk held ``latency_ms`` ± ``jitter_ms``),
``bandwidth`` (at most ``rate_kb`` KB/s each way), ``timeout`` (data stops flowing; the connection is
closed after ``timeout_ms``, never when 0), ``reset_peer`` (every connection, open or new, is reset),
``down`` (the port refuses connections and open ones are reset). :meth:`FaultProxy.clear` heals it.
:class:`ProxyControl` serves a JSON control API so ``resilient-etl proxy`` can drive proxies in
another process, as ``toxiproxy-cli`` drives ``toxiproxy-server``.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOXICS = ("latency", "bandwidth", "timeout", "reset_peer", "down")
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


@dataclass(frozen=True)
class Toxic:
    """One fault on a proxy; only the attributes of its ``type`` matter."""

    type: str
    latency_ms: int = 0
    jitter_ms: int = 0
    rate_kb: int = 0
    timeout_ms: int = 0

    def __post_init__(self) -> None:
        if self.type not in TOXICS:
            raise ValueError(f"toxic type {self.type!r}: one of {', '.join(TOXICS)}")
        if self.type == "bandwidth" and self.rate_kb <= 0:
            raise ValueError("a bandwidth toxic needs rate_kb > 0")


@dataclass
class ProxyStats:
    """What crossed the proxy: connections accepted, refused or reset by a fault, bytes each way."""

    accepted: int = 0
    faulted: int = 0  # connections reset or refused while a toxic was in force
    bytes_up: int = 0
    bytes_down: int = 0


def _reset(sock: socket.socket) -> None:
    """Reset ``sock``: both its peer and a thread blocked reading it find out."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        # wakes a thread blocked in recv() on it: close() alone does not, and the connection then stayed
        # established to the server with no owner (a drill's PostgreSQL session idle in transaction, holding
        # the locks the retried load then waited on forever)
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


@dataclass
class FaultProxy:
    """
    Forward ``listen`` to ``upstream`` with an optional toxic.

    :param name: what the proxy stands in for (``postcodes_io``, ``warehouse``…)
    :param upstream: ``(host, port)`` of the real service
    :param listen_port: the loopback port (0: a free one, kept across ``down``/``clear``)
    """

    name: str
    upstream: tuple[str, int]
    listen_port: int = 0
    toxic: Toxic | None = None
    stats: ProxyStats = field(default_factory=ProxyStats)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._rng = random.Random(11)

    @property
    def port(self) -> int:
        return self.listen_port

    def start(self) -> FaultProxy:
        """Listen (again) on the loopback port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.listen_port))
        listener.listen(128)
        self.listen_port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"proxy-{self.name}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and reset every open connection."""
        self._close_listener()
        self._reset_all()

    def set_toxic(self, toxic: Toxic) -> None:
        """Put ``toxic`` in force (replacing any other)."""
        with self._lock:
            self.toxic = toxic
        if toxic.type in ("reset_peer", "down"):
            self._reset_all()
        if toxic.type == "down":
            self._close_listener()

    def repoint(self, upstream: tuple[str, int]) -> None:
        """
        Send new connections to ``upstream`` and reset the open ones: what a DNS name or virtual IP moved
        to a promoted standby does (clients reconnect and reach the new primary).
        """
        with self._lock:
            self.upstream = upstream
        self._reset_all()

    def clear(self) -> None:
        """Remove the toxic: traffic flows again (a ``down`` proxy listens again on its port)."""
        with self._lock:
            was, self.toxic = self.toxic, None
        if was is not None and was.type == "down" and self._listener is None:
            self.start()

    def describe(self) -> dict[str, Any]:
        """Return the proxy as the control API shows it."""
        return {
            "name": self.name,
            "listen": f"127.0.0.1:{self.listen_port}",
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "toxic": asdict(self.toxic) if self.toxic else None,
            **asdict(self.stats),
        }

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
            except OSError:
                pass
            listener.close()

    def _reset_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
            self.stats.faulted += len(conns) // 2
        for sock in conns:
            _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            toxic = self.toxic
            if toxic is not None and toxic.type in ("reset_peer", "down"):
                self.stats.faulted += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self.stats.accepted += 1
                self._conns |= {client, upstream}
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(src, dst, up), daemon=True).start()

    def _hold(self, toxic: Toxic | None, size: int, since: float) -> bool:
        """Apply ``toxic`` to a chunk of ``size`` bytes; return False when the connection must close."""
        if toxic is None:
            return True
        if toxic.type == "latency":
            jitter = self._rng.uniform(-toxic.jitter_ms, toxic.jitter_ms) if toxic.jitter_ms else 0
            time.sleep(max(0.0, toxic.latency_ms + jitter) / 1000)
        elif toxic.type == "bandwidth":
            time.sleep(size / (toxic.rate_kb * 1024))
        elif toxic.type == "timeout":
            while self.toxic is toxic:  # nothing flows while the toxic holds
                if toxic.timeout_ms and time.monotonic() - since >= toxic.timeout_ms / 1000:
                    return False
                time.sleep(0.05)
        return True

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                if not self._hold(self.toxic, len(data), time.monotonic()):
                    with self._lock:
                        self.stats.faulted += 1
                    _reset(src)
                    _reset(dst)
                    return
                with self._lock:  # counted before sending: whoever got the bytes can read the count
                    if up:
                        self.stats.bytes_up += len(data)
                    else:
                        self.stats.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns -= {src, dst}
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


class ProxyControl:
    """
    The control API over a set of proxies (Toxiproxy's shape, JSON over HTTP on loopback).

    ``GET /proxies``; ``POST /proxies`` ``{"name", "upstream": "host:port", "listen_port"}``;
    ``POST /proxies/{name}/toxic`` ``{"type", ...attributes}``; ``DELETE /proxies/{name}/toxic``;
    ``DELETE /proxies/{name}``.
    """

    def __init__(self, port: int = 0) -> None:
        self.proxies: dict[str, FaultProxy] = {}
        control = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self, method: str) -> None:
                parts = [p for p in self.path.split("/") if p]
                try:
                    status, body = control.handle(method, parts, self._body() if method == "POST" else {})
                except (ValueError, TypeError, OSError) as exc:
                    status, body = 400, {"error": str(exc)}
                self._reply(status, body)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]

    def handle(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        """Answer one control request: ``(status, JSON body)``."""
        if parts == ["proxies"] and method == "GET":
            return 200, [p.describe() for p in self.proxies.values()]
        if parts == ["proxies"] and method == "POST":
            host, _, port = str(body["upstream"]).rpartition(":")
            proxy = self.add(FaultProxy(str(body["name"]), (host, int(port)), int(body.get("listen_port", 0))))
            return 201, proxy.describe()
        if len(parts) < 2 or parts[0] != "proxies" or parts[1] not in self.proxies:
            return 404, {"error": f"no proxy {'/'.join(parts[1:2])!r} (proxies: {', '.join(self.proxies) or 'none'})"}
        proxy = self.proxies[parts[1]]
        if parts[2:] == ["toxic"] and method == "POST":
            proxy.set_toxic(Toxic(**body))
            return 200, proxy.describe()
        if parts[2:] == ["toxic"] and method == "DELETE":
            proxy.clear()
            return 200, proxy.describe()
        if parts[2:] == [] and method == "DELETE":
            self.proxies.pop(parts[1]).stop()
            return 200, {"deleted": parts[1]}
        return 405, {"error": f"{method} /{'/'.join(parts)} is not a control route"}

    def add(self, proxy: FaultProxy) -> FaultProxy:
        """Start ``proxy`` and serve it."""
        if proxy.name in self.proxies:
            raise ValueError(f"proxy {proxy.name!r} exists")
        self.proxies[proxy.name] = proxy.start()
        return proxy

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`; every proxy's faults are removed and its port closed on the way out."""
        try:
            self.server.serve_forever()
        finally:
            for proxy in self.proxies.values():
                proxy.stop()
            self.server.server_close()

    def shutdown(self) -> None:
        self.server.shutdown()

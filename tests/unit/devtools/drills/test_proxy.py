"""The fault proxy on real loopback sockets: each Toxiproxy verb does what it says, and the CLI drives it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilient_etl_devtools.drills.proxy import FaultProxy, Toxic
from resilient_etl_devtools.sandbox.sinks import free_port

ENDED: list[threading.Event] = []  # one per upstream connection, set when the server side saw it end


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP echo server on loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    ENDED.clear()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            ENDED.append(threading.Event())
            threading.Thread(target=_echo, args=(conn, ENDED[-1]), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.close()


def _echo(conn: socket.socket, ended: threading.Event) -> None:
    try:
        while data := conn.recv(65536):
            conn.sendall(data)
    except OSError:  # the proxy reset it: that is what some tests do
        pass
    finally:
        conn.close()
        ended.set()


def _answer(send) -> bytes:
    """What came back, or b"" when the connection was reset or closed."""
    try:
        return send()
    except (ConnectionResetError, BrokenPipeError):
        return b""


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    p = FaultProxy("echo", echo).start()
    yield p
    p.stop()


def _roundtrip(port: int, payload: bytes = b"ping", timeout: float = 5.0) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got, time.monotonic() - started


def test_clean_proxy_forwards(proxy: FaultProxy) -> None:
    assert _roundtrip(proxy.port)[0] == b"ping"
    assert proxy.stats.accepted == 1 and proxy.stats.bytes_up == 4 and proxy.stats.bytes_down == 4


def test_latency_holds_each_chunk_both_ways(proxy: FaultProxy) -> None:
    _, clean = _roundtrip(proxy.port)
    proxy.set_toxic(Toxic("latency", latency_ms=200))
    got, slow = _roundtrip(proxy.port)
    assert got == b"ping" and slow >= 0.4 > clean  # 200 ms up + 200 ms down
    proxy.clear()
    assert _roundtrip(proxy.port)[1] < 0.2


def test_bandwidth_caps_the_rate(proxy: FaultProxy) -> None:
    proxy.set_toxic(Toxic("bandwidth", rate_kb=64))
    got, took = _roundtrip(proxy.port, b"x" * 32 * 1024)
    assert len(got) == 32 * 1024 and took >= 0.45  # 32 KB at 64 KB/s each way: ~1 s, at least half of it


def test_down_refuses_and_clear_listens_again_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.set_toxic(Toxic("down"))
    with pytest.raises(ConnectionRefusedError):
        _roundtrip(port)
    proxy.clear()
    assert proxy.port == port and _roundtrip(port)[0] == b"ping"


@pytest.mark.parametrize("toxic", ["down", "reset_peer"])
def test_a_cut_reaches_the_server_too(proxy: FaultProxy, toxic: str) -> None:
    """The server's side of a cut connection ends: a database session must not stay open holding its locks."""
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    client.sendall(b"a")
    assert client.recv(1) == b"a"
    proxy.set_toxic(Toxic(toxic))
    assert ENDED[0].wait(5), "the upstream connection is still open"
    client.close()


def test_reset_peer_resets_open_and_new_connections(proxy: FaultProxy) -> None:
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    live.sendall(b"a")
    assert live.recv(1) == b"a"
    proxy.set_toxic(Toxic("reset_peer"))
    assert _answer(lambda: live.sendall(b"b") or live.recv(1)) == b""
    assert _answer(lambda: _roundtrip(proxy.port)[0]) == b""
    assert proxy.stats.faulted >= 2
    live.close()
    proxy.clear()
    assert _roundtrip(proxy.port)[0] == b"ping"


def test_timeout_stalls_then_closes(proxy: FaultProxy) -> None:
    proxy.set_toxic(Toxic("timeout", timeout_ms=300))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"ping")
        assert _answer(lambda: s.recv(4)) == b""  # nothing came back, then the connection ended
    assert 0.25 <= time.monotonic() - started < 3


def test_a_bad_toxic_is_refused() -> None:
    with pytest.raises(ValueError, match="one of latency, bandwidth, timeout, reset_peer, down"):
        Toxic("sever")
    with pytest.raises(ValueError, match="rate_kb"):
        Toxic("bandwidth")


def test_the_cli_serves_proxies_and_applies_faults(echo: tuple[str, int]) -> None:
    exe = str(Path(sys.executable).with_name("resilient-etl"))
    control, listen = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    server = subprocess.Popen(
        [exe, "proxy", "serve", "--control", f"http://127.0.0.1:{control}", "--proxy", f"echo={listen}={echo[0]}:{echo[1]}"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert f"proxy echo: 127.0.0.1:{listen}" in server.stdout.readline()

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [exe, "proxy", *args, "--control", f"http://127.0.0.1:{control}"], env=env, capture_output=True, text=True, timeout=60
            )

        assert _roundtrip(listen)[0] == b"ping"
        down = cli("down", "echo")
        assert down.returncode == 0 and "proxy echo: down" in down.stdout
        with pytest.raises(ConnectionRefusedError):
            _roundtrip(listen)
        listed = json.loads(cli("list", "-o", "json").stdout)
        assert listed[0]["name"] == "echo" and json.loads(listed[0]["toxic"])["type"] == "down" and listed[0]["accepted"] == 1
        assert cli("clear", "echo").returncode == 0
        latency = cli("latency", "echo", "--latency-ms", "150")
        assert "latency" in latency.stdout and _roundtrip(listen)[1] >= 0.3
        missing = cli("down", "nope")
        assert missing.returncode != 0 and "no proxy 'nope'" in missing.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    with pytest.raises(ConnectionRefusedError):  # nothing left listening once it stopped
        _roundtrip(listen)

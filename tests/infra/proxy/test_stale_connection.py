"""A pooled upstream connection that the server closed while idle is not a server error.

gunicorn (pypiserver's server) closes idle keep-alive connections after 2 s; the proxy keeps
them longer, so now and then it sends a request on a connection the server is closing at that
moment. Like nginx, the proxy must retry that on a fresh connection (aiohttp's client does it
once for a reused connection, ``retry_persistent_connection``), or the report would blame the
index for the proxy's pooling. A server that resets fresh connections too is still recorded as
``upstream_reset``: these tests hold both halves.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipstorm.infra.proxy.control import RecordingProxy
from tests.infra.conftest import request, wait_for_records
from tests.support.pages import serving

BODY = b"a listing without links"


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


class KeepAliveThenDrop:
    """Answers the first request of each connection with keep-alive, then drops the connection
    when a second request arrives on it (the race, made deterministic). With ``always_reset``
    it drops every request unanswered."""

    def __init__(self, *, always_reset: bool = False) -> None:
        self.always_reset = always_reset
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if self.always_reset or not _read_request(conn):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                return  # close with RST
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: keep-alive\r\n"
                + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                + BODY
            )
            _read_request(conn)  # the second request on this connection: dropped unanswered

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def upstream() -> Iterator[KeepAliveThenDrop]:
    server = KeepAliveThenDrop()
    yield server
    server.close()


def test_a_get_on_a_connection_the_server_dropped_is_retried_fresh(
    upstream: KeepAliveThenDrop, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{upstream.port}/simple/"
    with RecordingProxy(url, tmp_path / "requests.jsonl") as proxy:
        for _ in range(3):
            status, _, body = request(proxy, "GET", "/r/run1/simple/x/")
            assert (status, body) == (200, BODY)
        records = wait_for_records(proxy.log_path, "run1", 3)
    assert [(r.status, r.error) for r in records] == [(200, None)] * 3
    assert upstream.connections >= 3  # the dropped pooled connections were replaced


def test_a_server_that_resets_fresh_connections_is_still_recorded(tmp_path: Path) -> None:
    server = KeepAliveThenDrop(always_reset=True)
    try:
        url = f"http://127.0.0.1:{server.port}/simple/"
        with RecordingProxy(url, tmp_path / "requests.jsonl") as proxy:
            status, _, _ = request(proxy, "GET", "/r/run1/simple/x/")
            (record,) = wait_for_records(proxy.log_path, "run1", 1)
    finally:
        server.close()
    assert status == 502
    assert (record.status, record.error) == (None, "upstream_reset")


def test_the_upstream_pool_shrinks_back_after_a_peak(tmp_path: Path) -> None:
    """A moment of overlapping requests grows the pool of upstream connections; once they are
    idle it must shrink back. With a keep-alive longer than the rate needs, aiohttp's FIFO reuse
    keeps every pooled connection busy enough never to idle out: a 30-minute soak kept 23 more
    descriptors after one slow minute, and the oldest connections, reused past the index's own
    keep-alive (gunicorn: 2 s), came back reset and were recorded as the index's errors."""
    pages = {"/simple/pkg/": (200, "text/html", BODY)}
    with (
        serving(pages, delay_s=0.5) as base,
        RecordingProxy(f"{base}/simple/", tmp_path / "r.jsonl") as proxy,
    ):
        upstream_port = int(base.rsplit(":", 1)[1])

        def upstream_connections() -> int:
            return sum(
                1
                for c in psutil.Process(proxy.pid).net_connections("tcp")
                if c.raddr and c.raddr.port == upstream_port and c.status == "ESTABLISHED"
            )

        threads = [
            threading.Thread(target=request, args=(proxy, "GET", f"/r/p{n}/simple/pkg/"))
            for n in range(30)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # How many upstream connections the peak opened, from the records (a count taken after
        # the threads joined could come after a busy host let the pool shrink already).
        records = [r for n in range(30) for r in wait_for_records(proxy.log_path, f"p{n}", 1)]
        opened = sum(1 for r in records if r.upstream_new)
        deadline = time.monotonic() + 15
        while upstream_connections() > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert opened >= 10  # the requests did overlap
        assert upstream_connections() == 0

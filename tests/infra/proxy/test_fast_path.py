"""A plain request on a pooled upstream connection is served from the protocols' callbacks
(``pipstorm.infra.proxy.fastpath``); whatever its upstream does, the client and the record see
what the task path gives them.

The upstream here answers the first request of each connection with a small keep-alive
listing, so the client's second request, on the same keep-alive connection to the proxy, finds
that connection in the pool: the fast path. Its second answer is the case under test.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.infra.proxy.control import RecordingProxy
from tests.infra.conftest import proxy_address, wait_for_records
from tests.infra.proxy.test_stale_connection import _read_request as _read_head

LISTING = b'<html><body><a href="/files/pkg-1.0.tar.gz">pkg-1.0.tar.gz</a></body></html>\n'
BIG = bytes(range(256)) * 4096  # 1 MiB: streamed, not read whole


def _answer(body: bytes, content_type: bytes = b"text/html") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        content_type,
        len(body),
        body,
    )


class SecondAnswer:
    """Keep-alive upstream: the first request of a connection gets ``LISTING``, the second
    what ``mode`` says: ``silent`` (none), ``garbage``, ``cut`` (a head announcing 1000 bytes,
    10 of them, then a close), ``big`` (``BIG``), ``listing`` (``LISTING`` again)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = _read_head(conn)
            if not head:
                return
            self.heads.append(head)
            conn.sendall(_answer(b"" if head.startswith(b"HEAD ") else LISTING))
            head = _read_head(conn)
            if not head:
                return
            self.heads.append(head)
            if self.mode == "silent":
                conn.recv(1)  # until the proxy gives up on it
            elif self.mode == "garbage":
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            elif self.mode == "cut":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            elif self.mode == "big":
                conn.sendall(_answer(BIG, b"application/octet-stream"))
                _read_head(conn)
            else:
                conn.sendall(_answer(b"" if head.startswith(b"HEAD ") else LISTING))
                _read_head(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[SecondAnswer]:
    server = SecondAnswer(request.param)
    yield server
    server.close()


def _twice(
    proxy: RecordingProxy, method: str = "GET", path: str = "/r/fast/simple/pkg/"
) -> tuple[tuple[int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]:
    """Two requests on one keep-alive connection to the proxy: status, headers, body each."""
    conn = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
    answers = []
    try:
        for _ in range(2):
            conn.request(method, path)
            response = conn.getresponse()
            answers.append((response.status, dict(response.getheaders()), response.read()))
            time.sleep(0.05)  # the first exchange's connection back in the pool
    finally:
        conn.close()
    return answers[0], answers[1]


def _proxy(
    upstream: SecondAnswer, tmp_path: Path, *, read_timeout: float = 300.0, grace: float = 5.0
) -> RecordingProxy:
    return RecordingProxy(
        f"http://127.0.0.1:{upstream.port}/simple/",
        tmp_path / "requests.jsonl",
        upstream_read_timeout=read_timeout,
        shutdown_grace=grace,
    )


@pytest.mark.parametrize("upstream", ["listing"], indirect=True)
def test_a_pooled_listing_is_rewritten_and_recorded_as_the_first(
    upstream: SecondAnswer, tmp_path: Path
) -> None:
    with _proxy(upstream, tmp_path) as proxy:
        first, second = _twice(proxy)
        records = wait_for_records(proxy.log_path, "fast", 2)
    assert first[0] == second[0] == 200
    assert first[2] == second[2]
    assert b"/r/fast/files/pkg-1.0.tar.gz" in second[2]
    assert first[1]["Content-Length"] == second[1]["Content-Length"] == str(len(second[2]))
    assert [(r.op, r.status, r.bytes, r.error, r.upstream_new) for r in records] == [
        ("listing", 200, len(first[2]), None, True),
        ("listing", 200, len(second[2]), None, False),
    ]
    assert records[0].conn == records[1].conn
    assert upstream.heads[0] == upstream.heads[1]  # the same request head went upstream


@pytest.mark.parametrize("upstream", ["listing"], indirect=True)
def test_a_pooled_head_request_gets_the_head_alone(upstream: SecondAnswer, tmp_path: Path) -> None:
    with _proxy(upstream, tmp_path) as proxy:
        first, second = _twice(proxy, "HEAD")
        records = wait_for_records(proxy.log_path, "fast", 2)
    assert first == second
    assert second[0] == 200 and second[2] == b""
    assert [(r.method, r.status, r.bytes, r.upstream_new) for r in records] == [
        ("HEAD", 200, 0, True),
        ("HEAD", 200, 0, False),
    ]


@pytest.mark.parametrize("upstream", ["big"], indirect=True)
def test_a_pooled_answer_too_big_to_read_whole_is_streamed(
    upstream: SecondAnswer, tmp_path: Path
) -> None:
    with _proxy(upstream, tmp_path) as proxy:
        _, second = _twice(proxy)
        records = wait_for_records(proxy.log_path, "fast", 2)
    assert second[0] == 200
    assert second[2] == BIG
    assert (records[1].status, records[1].bytes, records[1].error) == (200, len(BIG), None)


@pytest.mark.parametrize(
    ("upstream", "error"),
    [("garbage", "upstream_error: HttpParserError"), ("cut", "upstream_reset")],
    indirect=["upstream"],
)
def test_a_pooled_connection_that_answers_wrong_is_a_502(
    upstream: SecondAnswer, error: str, tmp_path: Path
) -> None:
    with _proxy(upstream, tmp_path) as proxy:
        _, second = _twice(proxy)
        records = wait_for_records(proxy.log_path, "fast", 2)
    assert second[0] == 502
    assert second[2] == f"{error}\n".encode()
    assert (records[1].status, records[1].error, records[1].upstream_new) == (None, error, False)


@pytest.mark.parametrize("upstream", ["silent"], indirect=True)
def test_a_pooled_connection_that_never_answers_times_out(
    upstream: SecondAnswer, tmp_path: Path
) -> None:
    with _proxy(upstream, tmp_path, read_timeout=0.5) as proxy:
        _, second = _twice(proxy)
        records = wait_for_records(proxy.log_path, "fast", 2)
    assert second[0] == 502
    assert (records[1].status, records[1].error) == (None, "upstream_timeout")
    assert records[1].total_ms >= 500.0


@pytest.mark.parametrize("upstream", ["silent"], indirect=True)
def test_stop_with_a_pooled_request_in_flight_records_it(
    upstream: SecondAnswer, tmp_path: Path
) -> None:
    proxy = _proxy(upstream, tmp_path, grace=0.2)
    with proxy:
        conn = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
        try:
            conn.request("GET", "/r/fast/simple/pkg/")
            conn.getresponse().read()
            time.sleep(0.05)
            conn.request("GET", "/r/fast/simple/pkg/")
            deadline = time.monotonic() + 15
            while len(upstream.heads) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # until the second request has reached the upstream
            assert len(upstream.heads) == 2
            proxy.stop()
        finally:
            conn.close()
    records = wait_for_records(tmp_path / "requests.jsonl", "fast", 2)
    assert (records[1].status, records[1].error) == (None, "proxy_shutdown")

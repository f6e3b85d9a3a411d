"""Connections in the proxy's records: which client connection carried each request, which
requests made the proxy open a new connection to the index, and the connections the proxy
closed itself (a request head that never completed) recorded like any refused request.

The upstream here is a real keep-alive HTTP/1.1 server (``http.server``) that counts the TCP
connections it accepted: the records must add up to that count exactly, whatever the proxy's
pool decided to reuse (no timing is assumed).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from pipstorm.engine.rundir.records import load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.proxy.wire.upstream import UPSTREAM_LIMIT
from tests.infra.conftest import proxy_address, wait_for_records

BODY = b'<html><body><a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a></body></html>\n'


class _CountingServer(ThreadingHTTPServer):
    """A keep-alive server that counts the TCP connections it accepted."""

    daemon_threads = True
    connections = 0

    def get_request(self) -> tuple[socket.socket, object]:
        accepted = super().get_request()
        self.connections += 1
        return accepted


class _KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the proxy may reuse the connection

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def upstream() -> Iterator[_CountingServer]:
    server = _CountingServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: _CountingServer, tmp_path: Path) -> Iterator[RecordingProxy]:
    port = upstream.server_address[1]
    with RecordingProxy(
        f"http://127.0.0.1:{port}/simple/", tmp_path / "requests.jsonl", client_header_timeout=1.0
    ) as running:
        yield running


def _get_on(conn: http.client.HTTPConnection, path: str) -> None:
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    assert response.read() == BODY


def test_each_record_names_the_client_connection_that_carried_it(
    proxy: RecordingProxy,
) -> None:
    first = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
    second = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
    try:
        for i in range(3):
            _get_on(first, f"/r/a/simple/p{i}/")
        for i in range(2):
            _get_on(second, f"/r/b/simple/p{i}/")
    finally:
        first.close()
        second.close()
    on_first = wait_for_records(proxy.log_path, "a", 3)
    on_second = wait_for_records(proxy.log_path, "b", 2)
    assert len({r.conn for r in on_first}) == 1
    assert len({r.conn for r in on_second}) == 1
    assert on_first[0].conn is not None and on_second[0].conn is not None
    assert on_first[0].conn != on_second[0].conn


def test_the_requests_that_opened_an_upstream_connection_add_up_to_the_index_count(
    proxy: RecordingProxy, upstream: _CountingServer
) -> None:
    conns = [http.client.HTTPConnection(*proxy_address(proxy), timeout=30) for _ in range(4)]
    try:
        for round_ in range(3):
            for i, conn in enumerate(conns):
                _get_on(conn, f"/r/run{i}/simple/p{round_}/")
    finally:
        for conn in conns:
            conn.close()
    records = [r for i in range(4) for r in wait_for_records(proxy.log_path, f"run{i}", 3)]
    assert all(isinstance(r.upstream_new, bool) for r in records), records
    opened = sum(1 for r in records if r.upstream_new)
    assert opened >= 1
    assert opened == upstream.connections  # exactly what the index accepted


def test_a_request_head_that_never_completes_is_recorded_when_the_proxy_closes_it(
    proxy: RecordingProxy, upstream: _CountingServer
) -> None:
    partial = b"GET /r/slow/simple/pkg/ HTTP/1.1\r\nHost: x\r\nX-Slow: y"
    with socket.create_connection(proxy_address(proxy), timeout=30) as slow:
        slow.sendall(partial)
        with contextlib.suppress(ConnectionResetError):
            assert slow.recv(1) == b""  # closed by the proxy (its header timeout), unanswered
    with (
        socket.create_connection(proxy_address(proxy), timeout=30) as silent,
        contextlib.suppress(ConnectionResetError),
    ):
        assert silent.recv(1) == b""  # a connection that never sent a byte
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        records = load_requests(proxy.log_path)[0] if proxy.log_path.exists() else []
        if len(records) >= 2:
            break
        time.sleep(0.05)
    assert len(records) == 2, records
    for record in records:
        assert record.run_id is None  # the proxy cannot tell which run it was
        assert record.status is None
        assert record.error == "client_header_timeout"
        assert record.conn is not None
        assert record.upstream_new is None  # nothing went upstream
    assert [r.req_bytes for r in records] == [len(partial), 0]
    assert records[0].conn != records[1].conn
    assert upstream.connections == 0


class _HoldingServer(_CountingServer):
    """Holds every answer until ``release`` is set; counts the requests held at once."""

    request_queue_size = 1024  # a burst of connects, none of their SYNs dropped

    def server_activate(self) -> None:
        super().server_activate()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        self.most_held = 0


class _Held(_KeepAlive):
    server: _HoldingServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.held += 1
            self.server.most_held = max(self.server.most_held, self.server.held)
        self.server.release.wait(60)
        with self.server.lock:
            self.server.held -= 1
        super().do_GET()


def test_plain_requests_beyond_the_upstream_bound_wait_for_a_slot_then_are_served(
    tmp_path: Path,
) -> None:
    """More plain GETs at once than the pool's bound: the bound holds (never more at the
    index), the rest wait for a slot (on the fast path, without a task) and are all served."""
    server = _HoldingServer(("127.0.0.1", 0), _Held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    extra = 8
    url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    try:
        with RecordingProxy(url, tmp_path / "requests.jsonl") as proxy:
            clients = [
                socket.create_connection(proxy_address(proxy), timeout=60)
                for _ in range(UPSTREAM_LIMIT + extra)
            ]
            with contextlib.ExitStack() as stack:
                for number, client in enumerate(clients):
                    stack.enter_context(client)
                    client.sendall(b"GET /r/held/simple/p%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % number)
                deadline = time.monotonic() + 60
                while server.held < UPSTREAM_LIMIT and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)  # room for a request beyond the bound to arrive (none may)
                server.release.set()
                for client in clients:
                    response = http.client.HTTPResponse(client)
                    response.begin()
                    assert (response.status, response.read()) == (200, BODY)
            records = wait_for_records(proxy.log_path, "held", UPSTREAM_LIMIT + extra)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    assert server.most_held == UPSTREAM_LIMIT
    assert {(r.status, r.error) for r in records} == {(200, None)}
    assert sum(1 for r in records if r.upstream_new) == server.connections


class _CutHoldingServer(_HoldingServer):
    """A holding server whose connections the proxy cuts: the answers written once released
    meet a reset socket, which is no error of the test's (no trace on stderr)."""

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _unread_by(port: int) -> int:
    """What 127.0.0.1:``port``'s process has yet to take in, from Linux's /proc/net/tcp: the
    bytes its clients sent that it has not acknowledged or not read, and the connections it
    has not accepted (a listening socket's queue). 0: every request sent to it was parsed (the
    proxy serves a request from the callback that read it)."""
    address = f"0100007F:{port:04X}"
    pending = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, _, queues = line.split()[1:5]
        tx_queue, rx_queue = (int(size, 16) for size in queues.split(":"))
        if local == address:
            pending += rx_queue
        elif remote == address:
            pending += tx_queue
    return pending


def test_requests_waiting_for_a_slot_at_shutdown_are_each_recorded_and_cut(
    tmp_path: Path,
) -> None:
    """SIGTERM while the pool's bound is full and plain GETs wait for a slot: at the end of
    the grace each request still waiting has one record, ``proxy_shutdown``, those queued for
    a slot with nothing sent upstream, and every client is cut off (none left hanging)."""
    server = _CutHoldingServer(("127.0.0.1", 0), _Held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    extra = 8
    url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    try:
        with contextlib.ExitStack() as stack:
            proxy = stack.enter_context(
                RecordingProxy(url, tmp_path / "requests.jsonl", shutdown_grace=1.0)
            )
            pid = proxy.pid
            clients: list[socket.socket] = []

            def send(count: int) -> None:
                for _ in range(count):
                    client = socket.create_connection(proxy_address(proxy), timeout=30)
                    stack.enter_context(client)
                    client.sendall(
                        b"GET /r/cut/simple/p%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % len(clients)
                    )
                    clients.append(client)

            send(UPSTREAM_LIMIT)
            deadline = time.monotonic() + 60
            while server.held < UPSTREAM_LIMIT and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.held == UPSTREAM_LIMIT  # the bound is full: every slot is held
            send(extra)  # these wait for a slot inside the proxy
            while _unread_by(proxy.port) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _unread_by(proxy.port) == 0  # the proxy has parsed (queued) every request
            proxy.stop()  # SIGTERM, waited for: the grace ends with every request still waiting
            assert not psutil.pid_exists(pid)
            for client in clients:
                response = http.client.HTTPResponse(client)
                with contextlib.closing(response), pytest.raises(ConnectionError):
                    response.begin()  # closed or reset, never an answer, never a timeout
        records = load_requests(proxy.log_path)[0]
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    by_path = {record.path: record for record in records}
    assert len(by_path) == len(records) == UPSTREAM_LIMIT + extra  # one record per request
    held = [by_path[f"/simple/p{n}/"] for n in range(UPSTREAM_LIMIT)]
    queued = [by_path[f"/simple/p{n}/"] for n in range(UPSTREAM_LIMIT, len(records))]
    assert {(r.run_id, r.status, r.error, r.bytes) for r in records} == {
        ("cut", None, "proxy_shutdown", 0)
    }
    assert {r.upstream_new for r in held} == {True}  # each on a connection of its own
    assert {r.upstream_new for r in queued} == {None}  # never sent: no upstream connection
    assert server.most_held == UPSTREAM_LIMIT
    assert server.connections == UPSTREAM_LIMIT  # nothing of the queued ones went upstream


@contextlib.contextmanager
def _full_listener() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs (they are retried after
    a second), so a connect to it does not complete; the port, while the block lasts."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):  # more than the queue holds, whatever the kernel rounds backlog 0 to
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        probe = socket.socket()
        probe.settimeout(0.3)
        with probe, pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))  # the premise: a connect here hangs
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_new_upstream_connection_that_never_completes_times_out(tmp_path: Path) -> None:
    # A plain GET with nothing pooled opens its upstream connection on the fast path; the
    # connect is timed out (the upstream read timeout) into the task path's 502 and record.
    with (
        _full_listener() as port,
        RecordingProxy(
            f"http://127.0.0.1:{port}/simple/",
            tmp_path / "requests.jsonl",
            upstream_read_timeout=0.5,
        ) as proxy,
    ):
        conn = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
        try:
            conn.request("GET", "/r/hang/simple/pkg/")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        (record,) = wait_for_records(proxy.log_path, "hang", 1)
    assert response.status == 502
    assert body == b"upstream_timeout\n"
    assert (record.status, record.error, record.upstream_new) == (None, "upstream_timeout", True)
    assert record.total_ms >= 500.0

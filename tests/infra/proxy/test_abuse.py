"""The real proxy process under abuse: malformed and oversized requests, slowloris clients,
clients and upstreams that hang up mid-body or talk garbage, and attempts to use it as an open
proxy. Each test ends by asking for a normal listing: whatever came before, the proxy still
serves another run.

The upstream is ``tests.infra.proxy.raw_upstream.RawUpstream`` on loopback; it keeps every request
head it received, so "never forwarded" is asserted where it would show.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipstorm.engine.rundir.records import RequestRecord, load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.proxy.wire.clients import HEADER_TIMEOUT_ERROR as HEADER_TIMEOUT
from tests.infra.conftest import proxy_address, request, wait_for_records
from tests.infra.proxy.raw_upstream import BIG_SIZE, LISTING, RawUpstream

STALLED = "client_disconnected: stalled"


@pytest.fixture
def upstream() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.close()


@pytest.fixture
def proxy(upstream: RawUpstream, tmp_path: Path) -> Iterator[RecordingProxy]:
    with RecordingProxy(
        f"{upstream.origin}/simple/", tmp_path / "requests.jsonl", upstream_read_timeout=5.0
    ) as running:
        yield running


def _still_serves(proxy: RecordingProxy, run_id: str = "after") -> None:
    """Another run's normal request is answered in full, and the proxy process is alive."""
    status, _, body = request(proxy, "GET", f"/r/{run_id}/simple/pkg/")
    assert (status, body) == (200, LISTING)
    assert psutil.Process(proxy.pid).status() != psutil.STATUS_ZOMBIE


def _send_raw(proxy: RecordingProxy, data: bytes, timeout: float = 15.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the proxy closes it (or ``timeout``).

    A reset, or a refusal to take all the bytes, counts as a dropped connection.
    """
    received = b""
    with socket.create_connection(proxy_address(proxy), timeout=timeout) as client:
        try:
            client.sendall(data)
            while chunk := client.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            pytest.fail(f"the proxy neither answered nor closed within {timeout} s: {received!r}")
    return received


def _status(answer: bytes) -> int | None:
    """The status of the first response in ``answer``; None when nothing came back."""
    if not answer:
        return None
    assert answer.startswith(b"HTTP/"), answer[:200]
    return int(answer[9:12])


MALFORMED = {
    "binary garbage": b"\x00\xff\xfe\x16\x03\x01 not http at all\r\n\r\n",
    "tls client hello": bytes.fromhex("160301020001000200") + b"\x03\x03" + b"\x00" * 64,
    "no version": b"GET /r/m/simple/\r\n\r\n",
    "bad version": b"GET /r/m/simple/ HTTP/9.9\r\nHost: x\r\n\r\n",
    "bad method": b"G\x00T /r/m/simple/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in target": b"GET /r/m/sim ple/ x HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without colon": b"GET /r/m/simple/ HTTP/1.1\r\nHost x\r\n\r\n",
    "nul in header": b"GET /r/m/simple/ HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "negative length": b"POST /r/m/upload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "two lengths": (
        b"POST /r/m/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 7\r\n\r\nhello"
    ),
    "length and chunked": (
        b"POST /r/m/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad chunk size": (
        b"POST /r/m/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    ),
    "100 KB request line": b"GET /r/m/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "100 KB header line": b"GET /r/m/simple/ HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"b" * 100_000
    + b"\r\n\r\n",
    "5000 headers": b"GET /r/m/simple/ HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    + b"\r\n",
    "1 MB of header bytes without an end": b"GET /r/m/simple/ HTTP/1.1\r\n"
    + b"X-A: a\r\n" * 130_000,
}


# What the records of refused malformed requests say: the parser's refusal, or the handler's.
_REFUSED_KINDS = ("bad_request: ", "http_version_refused")


def _stderr_size(proxy: RecordingProxy) -> int:
    """How much the proxy process has written to its stderr (a file the owner reads)."""
    return Path(f"/proc/{proxy.pid}/fd/2").stat().st_size


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_and_oversized_requests_are_refused(
    data: bytes, proxy: RecordingProxy, upstream: RawUpstream
) -> None:
    stderr_before = _stderr_size(proxy)
    answers = [_status(_send_raw(proxy, data)) for _ in range(3)]
    assert all(status is None or 400 <= status < 500 for status in answers), answers
    assert upstream.targets() == []  # nothing of it went upstream
    # Each refusal is a record (the parser's own as ``bad_request: <kind>``), not a traceback,
    # also when the connection was dropped before the client could read the answer.
    records = _records_once(proxy, len(answers))
    assert len(records) == len(answers), (answers, records)
    answered = [r.status for r, status in zip(records, answers, strict=True) if status is not None]
    assert answered == [status for status in answers if status is not None]
    assert all(r.error is not None and r.error.startswith(_REFUSED_KINDS) for r in records)
    assert _stderr_size(proxy) == stderr_before
    _still_serves(proxy)
    assert upstream.targets() == ["/simple/pkg/"]


def _records_once(proxy: RecordingProxy, count: int) -> list[RequestRecord]:
    """The proxy's records once there are ``count`` (a record may follow its close; bounded)."""
    deadline = time.monotonic() + 10
    while True:
        records = load_requests(proxy.log_path)[0] if proxy.log_path.exists() else []
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the proxy has closed ``sock`` (EOF or reset), without blocking."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_slowloris_clients_are_timed_out_and_others_served(
    upstream: RawUpstream, tmp_path: Path
) -> None:
    count, header_timeout = 200, 3.0
    with RecordingProxy(
        f"{upstream.origin}/simple/",
        tmp_path / "requests.jsonl",
        client_header_timeout=header_timeout,
    ) as proxy:
        slow = [socket.create_connection(proxy_address(proxy), timeout=10) for _ in range(count)]
        stop = threading.Event()
        open_since = time.monotonic()

        def trickle() -> None:
            head = b"GET /r/slow/simple/pkg/ HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 1000
            for byte in head:
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(bytes([byte]))
                if stop.wait(0.05):
                    return

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            time.sleep(1.0)  # all of them are trickling now
            started = time.monotonic()
            _still_serves(proxy)
            answered_in = time.monotonic() - started
            deadline = open_since + header_timeout + 30.0
            while not all(_closed_by_peer(s) for s in slow) and time.monotonic() < deadline:
                time.sleep(0.2)
            closed = sum(_closed_by_peer(s) for s in slow)
            closed_after = time.monotonic() - open_since
        finally:
            stop.set()
            trickler.join(timeout=10)
            for sock in slow:
                sock.close()
        print(  # noqa: T201 - the figure the README quotes
            f"slowloris: {count} trickling clients, a normal request answered in "
            f"{answered_in * 1000:.0f} ms; {closed} closed by the proxy after {closed_after:.1f} s"
            f" (header timeout {header_timeout} s)"
        )
        assert answered_in < 30.0
        assert closed == count
        _still_serves(proxy)
        # Each connection the proxy closed is a record of its own, unattributed (no run).
        timed_out = [r for r in _records_once(proxy, count + 2) if r.error == HEADER_TIMEOUT]
        assert len(timed_out) == count
        assert {r.run_id for r in timed_out} == {None}
        assert len({r.conn for r in timed_out}) == count
        assert all(r.req_bytes > 0 for r in timed_out)  # each had sent part of a head
    assert upstream.targets() == ["/simple/pkg/"] * 2  # no trickled request went upstream


def test_client_header_timeout_has_a_finite_default(proxy: RecordingProxy) -> None:
    assert 0 < proxy.client_header_timeout <= 120
    assert "--client-header-timeout" in psutil.Process(proxy.pid).cmdline()


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _hang_up(sock: socket.socket) -> None:
    """Close with a reset, like a killed client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _download_then_vanish(proxy: RecordingProxy, run_id: str, keep: int) -> None:
    client = socket.create_connection(proxy_address(proxy), timeout=30)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.sendall(f"GET /r/{run_id}/simple/big HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
    received = 0
    while received < keep:
        chunk = client.recv(1024 * 1024)
        assert chunk, "the proxy closed before the client hung up"
        received += len(chunk)
    _hang_up(client)


def _upload_then_vanish(
    proxy: RecordingProxy, upstream: RawUpstream, run_id: str, send: int
) -> None:
    client = socket.create_connection(proxy_address(proxy), timeout=30)
    client.sendall(
        f"POST /r/{run_id}/simple/upload HTTP/1.1\r\nHost: proxy\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {BIG_SIZE}\r\n\r\n".encode()
    )
    block = b"u" * (1024 * 1024)
    for _ in range(send // len(block)):
        client.sendall(block)
    before = len(upstream.uploaded)
    _hang_up(client)
    deadline = time.monotonic() + 15
    while len(upstream.uploaded) == before and time.monotonic() < deadline:
        time.sleep(0.02)  # the proxy has cut the upstream request too


def test_clients_vanishing_mid_body_are_recorded_and_memory_stays_flat(
    proxy: RecordingProxy, upstream: RawUpstream
) -> None:
    repetitions, cut = 20, BIG_SIZE // 2  # in the middle of the body
    for i in range(3):  # warm up buffers and pools the same way
        _download_then_vanish(proxy, f"warm{i}", cut)
        _upload_then_vanish(proxy, upstream, f"warmup{i}", cut)
    wait_for_records(proxy.log_path, "warm2", 1)
    baseline, stderr_before = _rss(proxy.pid), _stderr_size(proxy)
    fds_before = psutil.Process(proxy.pid).num_fds()
    for i in range(repetitions):
        _download_then_vanish(proxy, f"down{i}", cut)
        _upload_then_vanish(proxy, upstream, f"up{i}", cut)
        _still_serves(proxy, f"other{i}")
    downs = [wait_for_records(proxy.log_path, f"down{i}", 1)[0] for i in range(repetitions)]
    ups = [wait_for_records(proxy.log_path, f"up{i}", 1)[0] for i in range(repetitions)]
    growth_mb = (_rss(proxy.pid) - baseline) / 1e6
    fds_after = psutil.Process(proxy.pid).num_fds()
    print(  # noqa: T201 - the figure the README quotes
        f"{repetitions} x (50 MB download cut after {cut >> 20} MB, 50 MB upload cut after "
        f"{cut >> 20} MB): proxy RSS {baseline / 1e6:.1f} MB, growth {growth_mb:+.1f} MB; "
        f"fds {fds_before} -> {fds_after}"
    )
    for record in downs:
        assert (record.status, record.error) == (200, "client_disconnected")
        assert cut // 2 <= record.bytes < BIG_SIZE
    for record in ups:
        assert (record.op, record.error) == ("upload", "client_disconnected")
        assert cut // 2 <= record.req_bytes < BIG_SIZE  # a reset drops what was in flight
    for i in range(repetitions):
        (other,) = wait_for_records(proxy.log_path, f"other{i}", 1)
        assert (other.status, other.error) == (200, None)
    assert max(upstream.uploaded) < BIG_SIZE
    assert _stderr_size(proxy) == stderr_before  # nothing logged per hang-up
    assert growth_mb < 30, f"proxy RSS grew {growth_mb:.1f} MB"
    assert fds_after <= fds_before + 4  # pooled upstream connections may come and go


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("reset", "upstream_reset"),
        ("short-small", "upstream_reset"),
        ("garbage", "upstream_error"),
        ("garbage-head", "upstream_error"),
    ],
)
def test_upstream_failing_before_the_body_is_a_502_with_its_cause(
    kind: str, error: str, proxy: RecordingProxy
) -> None:
    status, _, body = request(proxy, "GET", f"/r/bad/simple/{kind}")
    assert status == 502
    (record,) = wait_for_records(proxy.log_path, "bad", 1)
    assert record.status is None
    assert record.error is not None and record.error.startswith(error), record.error
    assert body == f"{record.error}\n".encode()
    assert _stderr_size(proxy) == 0
    _still_serves(proxy)


def test_upstream_closing_mid_body_cuts_the_client_and_is_recorded(
    proxy: RecordingProxy,
) -> None:
    answer = _send_raw(
        proxy, b"GET /r/cut/simple/short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: 1000000" in head
    assert len(body) < 1_000_000  # the client can tell the body was cut
    (record,) = wait_for_records(proxy.log_path, "cut", 1)
    assert (record.status, record.error) == (200, "upstream_reset")
    assert record.bytes == len(body)
    assert _stderr_size(proxy) == 0
    _still_serves(proxy)


def test_binds_loopback_by_default(proxy: RecordingProxy) -> None:
    listening = [
        conn.laddr
        for conn in psutil.Process(proxy.pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert [addr.ip for addr in listening] == ["127.0.0.1"]
    assert proxy.url == f"http://127.0.0.1:{listening[0].port}"


def _refusals(upstream: RawUpstream) -> dict[str, bytes]:
    """Requests that try to reach something other than the fronted index, or to leave the
    run's prefix; each must be refused with a 4xx and never forwarded."""
    up = f"127.0.0.1:{upstream.port}"
    return {
        "absolute-form elsewhere": b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n",
        "absolute-form to the upstream": (
            f"GET http://{up}/simple/ HTTP/1.1\r\nHost: {up}\r\n".encode()
        ),
        "absolute-form with a run prefix": (
            f"GET http://{up}/r/abs/simple/ HTTP/1.1\r\nHost: {up}\r\n".encode()
        ),
        "connect elsewhere": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n",
        "connect to the upstream": f"CONNECT {up} HTTP/1.1\r\nHost: {up}\r\n".encode(),
        "other origin key": b"GET /o/oo/http-80-example.com/ HTTP/1.1\r\nHost: x\r\n",
        "other loopback port": b"GET /o/oo/http-22-127.0.0.1/ HTTP/1.1\r\nHost: x\r\n",
        "dot-dot": b"GET /r/dd/simple/../../etc/passwd HTTP/1.1\r\nHost: x\r\n",
        "dot-dot to another run": b"GET /r/dd/../victim/simple/ HTTP/1.1\r\nHost: x\r\n",
        "dot-dot to another origin": (
            b"GET /r/dd/../../o/dd/http-80-example.com/ HTTP/1.1\r\nHost: x\r\n"
        ),
        "dot-dot as run id": b"GET /r/../simple/ HTTP/1.1\r\nHost: x\r\n",
        "encoded dot-dot": b"GET /r/dd/%2e%2e/%2E%2E/secret HTTP/1.1\r\nHost: x\r\n",
        "encoded slash and dot-dot": b"GET /r/dd/..%2f..%2fsecret HTTP/1.1\r\nHost: x\r\n",
        "encoded slash in run id": b"GET /r/dd%2f..%2fvictim/simple/ HTTP/1.1\r\nHost: x\r\n",
        "encoded slash in origin key": (
            b"GET /o/dd/http-80-127.0.0.1%2f@example.com/ HTTP/1.1\r\nHost: x\r\n"
        ),
        "backslash dot-dot": b"GET /r/dd/..\\..\\secret HTTP/1.1\r\nHost: x\r\n",
        "double-encoded dot-dot": b"GET /r/dd/%252e%252e/secret HTTP/1.1\r\nHost: x\r\n",
    }


def test_not_an_open_proxy(proxy: RecordingProxy, upstream: RawUpstream) -> None:
    refusals = _refusals(upstream)
    answers = {
        name: _status(_send_raw(proxy, head + b"Connection: close\r\n\r\n"))
        for name, head in refusals.items()
    }
    assert upstream.targets() == [], upstream.targets()
    # Each is refused in so many words and recorded: unattributed (404), another origin (403),
    # a dot segment (400).
    assert all(status in (400, 403, 404) for status in answers.values()), answers
    records = load_requests(proxy.log_path)[0]
    assert [(r.method, r.status) for r in records] == [
        (head.split(b" ", 1)[0].decode(), answers[name]) for name, head in refusals.items()
    ]
    expected_error = {400: "path_refused", 403: "origin_refused", 404: None}
    assert all(r.error == expected_error[r.status or 0] for r in records), records
    _still_serves(proxy)


def test_host_header_does_not_choose_the_upstream(
    proxy: RecordingProxy, upstream: RawUpstream
) -> None:
    for host in ("example.com", f"127.0.0.1:{proxy.port}", "127.0.0.1:22", "[::1]:80"):
        status, _, body = request(
            proxy, "GET", "/r/host/simple/pkg/", {"Host": host, "X-Forwarded-Host": host}
        )
        assert (status, body) == (200, LISTING)
    hosts = [
        line.split(b":", 1)[1].strip().decode()
        for head in upstream.heads
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"host:")
    ]
    assert hosts == [f"127.0.0.1:{upstream.port}"] * 4


@pytest.mark.e2e  # 270 stalled 50 MB answers: seconds of CPU on a shared machine
def test_clients_that_stop_reading_do_not_starve_other_runs(
    upstream: RawUpstream, tmp_path: Path
) -> None:
    # More stalled downloads than the proxy keeps upstream connections (256): each holds one
    # while its answer cannot be written, so without a stall timeout nobody else gets one.
    count, stall_timeout = 270, 3.0
    with RecordingProxy(
        f"{upstream.origin}/simple/",
        tmp_path / "requests.jsonl",
        client_stall_timeout=stall_timeout,
    ) as proxy:
        stalled = []
        try:
            for i in range(count):
                sock = socket.create_connection(proxy_address(proxy), timeout=10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
                sock.sendall(f"GET /r/stall{i}/simple/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                stalled.append(sock)
            started = time.monotonic()
            _still_serves(proxy)
            answered_in = time.monotonic() - started
            records = [wait_for_records(proxy.log_path, f"stall{i}", 1)[0] for i in range(count)]
        finally:
            for sock in stalled:
                _hang_up(sock)
        print(  # noqa: T201 - the figure the README quotes
            f"{count} clients not reading 50 MB answers: a normal request answered in "
            f"{answered_in:.1f} s (stall timeout {stall_timeout} s)"
        )
        assert all((r.status, r.error) == (200, STALLED) for r in records)
        assert all(r.bytes < BIG_SIZE for r in records)
        _still_serves(proxy)


def test_client_stall_timeout_has_a_finite_default(proxy: RecordingProxy) -> None:
    assert 0 < proxy.client_stall_timeout <= 300
    assert "--client-stall-timeout" in psutil.Process(proxy.pid).cmdline()


def test_a_client_that_stops_sending_its_body_gets_a_408(
    upstream: RawUpstream, tmp_path: Path
) -> None:
    with RecordingProxy(
        f"{upstream.origin}/simple/", tmp_path / "requests.jsonl", client_stall_timeout=2.0
    ) as proxy:
        with socket.create_connection(proxy_address(proxy), timeout=30) as client:
            client.sendall(
                f"POST /r/slowup/simple/upload HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {BIG_SIZE}\r\n\r\n".encode()
                + b"u" * 1_000_000
            )
            answer = b""
            while chunk := client.recv(65536):  # then nothing more is sent
                answer += chunk
        (record,) = wait_for_records(proxy.log_path, "slowup", 1)
        assert _status(answer) == 408
        # The 408 is the proxy's; no upstream answer came (status null), and the cause is the
        # client's, so a report counts it apart from the index's errors.
        assert (record.op, record.status, record.error) == ("upload", None, STALLED)
        assert record.req_bytes == 1_000_000
        _still_serves(proxy)
    assert upstream.uploaded == [1_000_000]  # the upstream saw the request cut short

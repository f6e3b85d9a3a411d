"""The recording proxy in front of the real pypiserver, with real pip and raw sockets."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.proxy.control import ProxyError, RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from tests.infra.conftest import (
    Corpus,
    proxy_address,
    request,
    scrubbed_env,
    wait_for_records,
    write_wheel,
)


def test_pip_download_through_proxy_is_recorded(
    proxy: RecordingProxy, corpus: Corpus, tmp_path: Path
) -> None:
    dest = tmp_path / "dl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "-d",
            str(dest),
            "--index-url",
            proxy.index_url_for("run1"),
            "test_package_000==1.1.0",
        ],
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (dest / corpus.wheel.name).read_bytes() == corpus.wheel.read_bytes()

    listing, download = wait_for_records(proxy.log_path, "run1", 2)
    assert (listing.op, listing.method, listing.status) == ("listing", "GET", 200)
    assert listing.path == "/simple/test-package-000/"
    assert listing.bytes > 0
    assert (download.op, download.status, download.error) == ("download", 200, None)
    assert download.path == f"/packages/{corpus.wheel.name}"
    assert download.bytes == corpus.wheel.stat().st_size
    for record in (listing, download):
        assert record.user_agent is not None and record.user_agent.startswith("pip/")
        assert record.ttfb_ms is not None
        assert 0 <= record.ttfb_ms <= record.total_ms
        assert record.req_bytes == 0
        assert record.range is None
    assert listing.ts <= download.ts
    assert proxy.credentials is not None
    assert proxy.credentials.password not in result.stdout + result.stderr


def test_redirects_stay_on_the_proxy_and_are_attributed(
    proxy: RecordingProxy, corpus: Corpus
) -> None:
    status, headers, _ = request(proxy, "GET", "/r/redir/simple/Test_Package_000")
    assert status == 301
    assert headers["Location"] == f"{proxy.url}/r/redir/simple/Test_Package_000/"
    status, headers, _ = request(proxy, "GET", headers["Location"].removeprefix(proxy.url))
    assert status == 301
    assert headers["Location"] == f"{proxy.url}/r/redir/simple/test-package-000/"
    status, _, body = request(proxy, "GET", "/r/redir/simple/test-package-000/")
    assert status == 200
    # pypiserver links are origin-relative ("/packages/..."): rewritten under the run prefix.
    link = f"/r/redir/packages/{corpus.wheel.name}"
    assert link.encode() in body
    assert b'href="/packages/' not in body
    status, _, wheel = request(proxy, "GET", link)
    assert status == 200
    assert wheel == corpus.wheel.read_bytes()

    records = wait_for_records(proxy.log_path, "redir", 4)
    assert [(r.op, r.status) for r in records] == [
        ("redirect", 301),
        ("redirect", 301),
        ("listing", 200),
        ("download", 200),
    ]
    assert records[0].path == "/simple/Test_Package_000"
    assert records[2].bytes == len(body)


def test_a_listing_rewritten_once_links_each_run_under_its_own_prefix(
    proxy: RecordingProxy, corpus: Corpus
) -> None:
    """The proxy keeps a listing rewritten for a placeholder run id: every run still gets
    links under its own prefix, and a body of the right length."""
    bodies: dict[str, bytes] = {}
    for run in ("first", "second", "first"):
        status, headers, body = request(proxy, "GET", f"/r/{run}/simple/test-package-000/")
        assert status == 200
        assert f"/r/{run}/packages/{corpus.wheel.name}".encode() in body
        assert b"pipstormrun" not in body
        assert int(headers["Content-Length"]) == len(body)
        bodies.setdefault(run, body)
        assert bodies[run] == body
    assert bodies["first"].replace(b"/r/first/", b"/r/second/") == bodies["second"]


def test_unattributed_request_is_404_and_recorded(proxy: RecordingProxy) -> None:
    assert request(proxy, "GET", "/simple/")[0] == 404
    assert request(proxy, "GET", "/r/bad!id/simple/")[0] == 404
    records = wait_for_records(proxy.log_path, None, 2)
    assert [(r.path, r.status, r.op, r.error) for r in records] == [
        ("/simple/", 404, "listing", None),
        ("/r/bad!id/simple/", 404, "listing", None),
    ]


def test_range_request_passes_through(proxy: RecordingProxy, corpus: Corpus) -> None:
    data = corpus.wheel.read_bytes()
    status, headers, body = request(
        proxy, "GET", f"/r/range/packages/{corpus.wheel.name}", {"Range": "bytes=10-99"}
    )
    assert status == 206
    assert body == data[10:100]
    assert headers["Content-Range"] == f"bytes 10-99/{len(data)}"
    (record,) = wait_for_records(proxy.log_path, "range", 1)
    assert (record.status, record.bytes, record.range) == (206, 90, "bytes=10-99")


def test_head_request_has_no_body(proxy: RecordingProxy, corpus: Corpus) -> None:
    status, headers, body = request(proxy, "HEAD", f"/r/head/packages/{corpus.wheel.name}")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) == corpus.wheel.stat().st_size
    (record,) = wait_for_records(proxy.log_path, "head", 1)
    assert (record.method, record.status, record.bytes) == ("HEAD", 200, 0)


def test_proxy_replaces_client_authorization(proxy: RecordingProxy) -> None:
    wrong = Credentials("someone", "wrong").basic_auth_header()
    assert request(proxy, "GET", "/r/auth/simple/", {"Authorization": wrong})[0] == 200


def test_upload_body_is_streamed_and_counted(
    proxy: RecordingProxy, corpus: Corpus, tmp_path: Path
) -> None:
    wheel = write_wheel(tmp_path, "uploaded_pkg", "1.0.0", payload=b"x" * 300_000)
    boundary = "pipstorm-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\n'
        "file_upload\r\n".encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{wheel.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode(),
        wheel.read_bytes(),
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    body = b"".join(parts)
    status, _, _ = request(
        proxy,
        "POST",
        "/r/up/",
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        body,
    )
    assert status == 200
    assert (corpus.directory / wheel.name).read_bytes() == wheel.read_bytes()
    (record,) = wait_for_records(proxy.log_path, "up", 1)
    assert (record.op, record.method, record.status) == ("upload", "POST", 200)
    assert record.req_bytes == len(body)


def test_password_not_in_proxy_cmdline(proxy: RecordingProxy) -> None:
    assert proxy.credentials is not None
    assert proxy.credentials.password not in " ".join(psutil.Process(proxy.pid).cmdline())


def test_without_credentials_upstream_401_passes_through(
    pypiserver: LocalPypiserver, tmp_path: Path
) -> None:
    with RecordingProxy(pypiserver.index_url, tmp_path / "r.jsonl") as anonymous:
        assert request(anonymous, "GET", "/r/anon/simple/")[0] == 401
        (record,) = wait_for_records(anonymous.log_path, "anon", 1)
    assert (record.status, record.error) == (401, None)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and nobody can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_upstream_down_gives_502_and_a_transport_error(closed_port: int, tmp_path: Path) -> None:
    upstream = f"http://127.0.0.1:{closed_port}/simple/"
    with RecordingProxy(upstream, tmp_path / "r.jsonl") as proxy:
        status, _, body = request(proxy, "GET", "/r/down/simple/pkg/")
        assert status == 502
        assert body == b"upstream_refused\n"
        (record,) = wait_for_records(proxy.log_path, "down", 1)
    assert (record.status, record.error, record.op) == (None, "upstream_refused", "listing")


class MisbehavingUpstream:
    """A raw socket server on 127.0.0.1 that never answers.

    'silent' reads the request head and waits, 'reset' hangs up, 'sink' reads (and counts)
    everything sent until the proxy closes the connection.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # listener closed: the test is over
            self.accepted.append(conn)
            if self.mode == "sink":
                while chunk := conn.recv(65536):
                    self.received += len(chunk)
                continue
            conn.recv(65536)
            if self.mode == "reset":
                conn.close()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self.listener.close()
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv()
            conn.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    ("mode", "error"), [("silent", "upstream_timeout"), ("reset", "upstream_reset")]
)
def test_upstream_timeout_and_reset_are_transport_errors(
    mode: str, error: str, tmp_path: Path
) -> None:
    upstream = MisbehavingUpstream(mode)
    try:
        with RecordingProxy(
            f"http://127.0.0.1:{upstream.port}/simple/",
            tmp_path / "r.jsonl",
            upstream_read_timeout=0.5,
        ) as proxy:
            status, _, body = request(proxy, "GET", "/r/bad/simple/")
            assert (status, body) == (502, f"{error}\n".encode())
            (record,) = wait_for_records(proxy.log_path, "bad", 1)
    finally:
        upstream.close()
    assert (record.status, record.error) == (None, error)


def _sample_rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_big_download_is_streamed_with_flat_memory(
    pypiserver: LocalPypiserver, corpus: Corpus, tmp_path: Path
) -> None:
    size = corpus.big_wheel.stat().st_size
    with RecordingProxy(
        pypiserver.index_url, tmp_path / "r.jsonl", credentials=pypiserver.credentials
    ) as proxy:
        for _ in range(5):  # warm up pools and buffers with small requests
            assert request(proxy, "GET", f"/r/warm/packages/{corpus.wheel.name}")[0] == 200
        baseline = _sample_rss(proxy.pid)
        peak = baseline
        with socket.socket() as client:
            # A small receive window and a slow reader: a buffering proxy would hold the file.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            client.connect(proxy_address(proxy))
            client.sendall(
                f"GET /r/big/packages/{corpus.big_wheel.name} HTTP/1.1\r\n"
                "Host: proxy\r\nConnection: close\r\n\r\n".encode()
            )
            received = 0
            next_sample = 0
            while chunk := client.recv(256 * 1024):
                received += len(chunk)
                if received >= next_sample:
                    peak = max(peak, _sample_rss(proxy.pid))
                    next_sample += 1024 * 1024
                    time.sleep(0.01)  # throttle the reader; nothing is waited for
        (record,) = wait_for_records(proxy.log_path, "big", 1)
    growth_mb = (peak - baseline) / 1e6
    assert received > size  # headers + body
    assert (record.status, record.bytes, record.error) == (200, size, None)
    assert growth_mb < 20, f"proxy RSS grew {growth_mb:.1f} MB while streaming {size} bytes"


def test_client_disconnect_mid_body_is_recorded(proxy: RecordingProxy, corpus: Corpus) -> None:
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.connect(proxy_address(proxy))
        client.sendall(
            f"GET /r/gone/packages/{corpus.big_wheel.name} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode()
        )
        received = 0
        while received < 512 * 1024:
            received += len(client.recv(65536))
        # Linger 0: close() sends a reset at once, like a killed client.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    (record,) = wait_for_records(proxy.log_path, "gone", 1)
    assert (record.status, record.error) == (200, "client_disconnected")
    assert 0 < record.bytes < corpus.big_wheel.stat().st_size


def test_stop_terminates_the_child(proxy: RecordingProxy) -> None:
    process = psutil.Process(proxy.pid)
    proxy.stop()
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    proxy.stop()  # idempotent
    with pytest.raises(ProxyError, match="not running"):
        _ = proxy.url


def test_start_errors_are_one_line(pypiserver: LocalPypiserver, tmp_path: Path) -> None:
    with pytest.raises(ProxyError, match="credentials"):
        RecordingProxy("http://u:secret@127.0.0.1:1/simple/", tmp_path / "r.jsonl")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = RecordingProxy(
            pypiserver.index_url, tmp_path / "r.jsonl", port=taken.getsockname()[1]
        )
        with pytest.raises(ProxyError, match="exited with code 2") as excinfo:
            busy.start()
    assert "\n" not in str(excinfo.value)
    assert "address already in use" in str(excinfo.value).lower()


def test_index_url_for_validates_run_id(proxy: RecordingProxy) -> None:
    assert proxy.index_url_for("a.b_c-1") == f"{proxy.url}/r/a.b_c-1/simple/"
    with pytest.raises(ProxyError, match="run id"):
        proxy.index_url_for("no/slash")


def _read_until(client: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_expect_100_continue_is_answered(proxy: RecordingProxy) -> None:
    body = b"x" * 1000
    with socket.create_connection(proxy_address(proxy), timeout=30) as client:
        client.sendall(
            b"POST /r/expect/ HTTP/1.1\r\nHost: proxy\r\nContent-Type: text/plain\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert _read_until(client, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        client.sendall(body)
        answer = _read_until(client, b"\r\n\r\n")
    (record,) = wait_for_records(proxy.log_path, "expect", 1)
    assert (record.op, record.req_bytes, record.error) == ("upload", len(body), None)
    # pypiserver read the whole body and refused it as an upload without a file field: its 400
    # reached the client, and the record holds the same status (a proxy error would be a 502).
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert record.status == 400


def test_client_disconnect_mid_upload_is_recorded(tmp_path: Path) -> None:
    upstream = MisbehavingUpstream("sink")
    try:
        proxy = RecordingProxy(f"http://127.0.0.1:{upstream.port}/", tmp_path / "r.jsonl")
        with proxy, socket.create_connection(proxy_address(proxy), timeout=30) as client:
            client.sendall(
                b"POST /r/halfup/ HTTP/1.1\r\nHost: proxy\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 10000000\r\n\r\n" + b"x" * 100_000
            )
            deadline = time.monotonic() + 15
            while upstream.received < 100_000 and time.monotonic() < deadline:
                time.sleep(0.02)  # until the proxy has forwarded what was sent
            client.close()
            (record,) = wait_for_records(proxy.log_path, "halfup", 1)
    finally:
        upstream.close()
    assert (record.op, record.status, record.error) == ("upload", None, "client_disconnected")
    assert record.req_bytes == 100_000


def test_stop_with_a_request_in_flight_records_it(tmp_path: Path) -> None:
    upstream = MisbehavingUpstream("silent")
    try:
        proxy = RecordingProxy(
            f"http://127.0.0.1:{upstream.port}/simple/", tmp_path / "r.jsonl", shutdown_grace=0.2
        )
        with proxy, socket.create_connection(proxy_address(proxy), timeout=30) as client:
            client.sendall(b"GET /r/inflight/simple/ HTTP/1.1\r\nHost: proxy\r\n\r\n")
            deadline = time.monotonic() + 15
            while not upstream.accepted and time.monotonic() < deadline:
                time.sleep(0.02)  # until the request has reached the upstream
            assert upstream.accepted
            proxy.stop()
    finally:
        upstream.close()
    (record,) = wait_for_records(tmp_path / "r.jsonl", "inflight", 1)
    assert (record.status, record.error) == (None, "proxy_shutdown")

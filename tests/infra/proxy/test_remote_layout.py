"""The proxy in front of an index laid out like a remote one, with files on a second origin.

Two small real HTTP servers on 127.0.0.1 stand in for them: the index lives under /repo/simple/
(Artifactory-style), its listings are gzip-compressed and link files on the file host with
absolute URLs, one file is a redirect to the file host (as S3-backed indexes answer), and a
redirect uses an origin-relative Location. Everything must come back through the proxy,
attributed and classified by what was served; the index's credentials must reach the index only.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.proxy.rewrite import Origin, parse_origins
from tests.infra.conftest import request, wait_for_records

WHEEL = b"PK\x03\x04 not really a wheel" * 100
CREDENTIALS = Credentials("index-user", "index-secret")


@dataclass
class Seen:
    """What a test server saw: (path, Authorization header or None) per request."""

    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    files_origin = ""
    seen = Seen()

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


class RemoteLikeIndex(_Handler):
    """/repo/simple/pkg/ (HTML, gzip; or JSON), a redirect, and a file redirected elsewhere."""

    def do_GET(self) -> None:
        self.seen.requests.append((self.path, self.headers.get("Authorization")))
        files = self.files_origin
        if self.path == "/repo/simple/Pkg/":
            self._send(301, b"", {"Location": "/repo/simple/pkg/"})
        elif self.path == "/repo/simple/pkg/" and "json" in self.headers.get("Accept", ""):
            page = {
                "meta": {"api-version": "1.1"},
                "files": [{"filename": "pkg.whl", "url": f"{files}/files/pkg.whl"}],
            }
            self._send(
                200,
                json.dumps(page).encode(),
                {"Content-Type": "application/vnd.pypi.simple.v1+json"},
            )
        elif self.path == "/repo/simple/pkg/":
            html = (
                f'<a href="{files}/files/pkg.whl">pkg.whl</a>'
                '<a href="../../blobs/4f/pkg-2.whl">pkg-2.whl</a>'
            ).encode()
            self._send(
                200,
                gzip.compress(html),
                {"Content-Type": "text/html", "Content-Encoding": "gzip"},
            )
        elif self.path == "/repo/blobs/4f/pkg-2.whl":
            self._send(302, b"", {"Location": f"{files}/signed/pkg-2?X-Amz-Signature=s3cr3t"})
        else:
            self._send(404, b"", {})


class FileHost(_Handler):
    """Serves any path as the wheel; records whether an Authorization header came along."""

    def do_GET(self) -> None:
        self.seen.requests.append((self.path, self.headers.get("Authorization")))
        self._send(200, WHEEL, {"Content-Type": "application/octet-stream"})


@dataclass
class Servers:
    index_url: str
    files_origin: str
    index_seen: Seen
    files_seen: Seen


def _serve(handler: type[_Handler]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def servers() -> Iterator[Servers]:
    files_seen, index_seen = Seen(), Seen()
    files_handler = type("Files", (FileHost,), {"seen": files_seen})
    files, files_thread = _serve(files_handler)
    files_origin = f"http://127.0.0.1:{files.server_address[1]}"
    index_handler = type(
        "Index", (RemoteLikeIndex,), {"seen": index_seen, "files_origin": files_origin}
    )
    index, index_thread = _serve(index_handler)
    try:
        yield Servers(
            index_url=f"http://127.0.0.1:{index.server_address[1]}/repo/simple/",
            files_origin=files_origin,
            index_seen=index_seen,
            files_seen=files_seen,
        )
    finally:
        for server, thread in ((index, index_thread), (files, files_thread)):
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def test_files_on_a_second_origin_go_through_the_proxy(servers: Servers, tmp_path: Path) -> None:
    key = Origin.from_url(servers.files_origin)
    assert key is not None
    other = f"/o/run/{key.key}"
    with RecordingProxy(servers.index_url, tmp_path / "r.jsonl", credentials=CREDENTIALS) as proxy:
        assert proxy.index_url_for("run") == f"{proxy.url}/r/run/repo/simple/"
        # Before any listing linked the file host, the proxy refuses to go there.
        status, _, body = request(proxy, "GET", f"{other}/files/pkg.whl")
        assert (status, body.startswith(b"origin_refused")) == (403, True)
        status, headers, body = request(
            proxy, "GET", "/r/run/repo/simple/pkg/", {"Accept-Encoding": "gzip"}
        )
        assert status == 200
        assert "Content-Encoding" not in headers  # decompressed to be rewritten
        assert (
            body
            == (
                f'<a href="{proxy.url}{other}/files/pkg.whl">pkg.whl</a>'
                '<a href="../../blobs/4f/pkg-2.whl">pkg-2.whl</a>'
            ).encode()
        )
        status, _, wheel = request(proxy, "GET", f"{other}/files/pkg.whl")
        assert (status, wheel) == (200, WHEEL)
        # A file of the index redirected to the file host: both hops stay on the proxy.
        status, headers, _ = request(proxy, "GET", "/r/run/repo/blobs/4f/pkg-2.whl")
        location = f"{proxy.url}{other}/signed/pkg-2?X-Amz-Signature=s3cr3t"
        assert (status, headers["Location"]) == (302, location)
        status, _, wheel = request(proxy, "GET", location[len(proxy.url) :])
        assert (status, wheel) == (200, WHEEL)
        status, _, page = request(
            proxy,
            "GET",
            "/r/run/repo/simple/pkg/",
            {"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        assert status == 200
        assert json.loads(page)["files"][0]["url"] == f"{proxy.url}{other}/files/pkg.whl"
        status, headers, _ = request(proxy, "GET", "/r/run/repo/simple/Pkg/")
        assert (status, headers["Location"]) == (301, f"{proxy.url}/r/run/repo/simple/pkg/")
        # An origin no listing linked is refused, also with a well-formed key.
        assert request(proxy, "GET", "/o/run/https-443-example.org/x.whl")[0] == 403
        records = wait_for_records(proxy.log_path, "run", 8)
    files = servers.files_origin
    assert [(r.op, r.path, r.status, r.error) for r in records] == [
        ("download", f"{files}/files/pkg.whl", 403, "origin_refused"),
        ("listing", "/repo/simple/pkg/", 200, None),
        ("download", f"{files}/files/pkg.whl", 200, None),
        ("redirect", "/repo/blobs/4f/pkg-2.whl", 302, None),
        ("download", f"{files}/signed/pkg-2?...", 200, None),  # the signature is not recorded
        ("listing", "/repo/simple/pkg/", 200, None),
        ("redirect", "/repo/simple/Pkg/", 301, None),
        ("download", "https://example.org/x.whl", 403, "origin_refused"),
    ]
    assert records[2].bytes == len(WHEEL)
    # The index saw its credentials on every request; the file host never saw any.
    assert servers.index_seen.requests
    assert {auth for _, auth in servers.index_seen.requests} == {CREDENTIALS.basic_auth_header()}
    assert [path for path, _ in servers.files_seen.requests] == [
        "/files/pkg.whl",
        "/signed/pkg-2?X-Amz-Signature=s3cr3t",
    ]
    assert {auth for _, auth in servers.files_seen.requests} == {None}
    assert "s3cr3t" not in proxy.log_path.read_text()


def test_allow_origin_opens_an_origin_no_listing_linked(servers: Servers, tmp_path: Path) -> None:
    key = Origin.from_url(servers.files_origin)
    assert key is not None
    with RecordingProxy(
        servers.index_url, tmp_path / "r.jsonl", allow_origins=parse_origins([servers.files_origin])
    ) as proxy:
        status, _, wheel = request(proxy, "GET", f"/o/run/{key.key}/files/pkg.whl")
        assert (status, wheel) == (200, WHEEL)
        wait_for_records(proxy.log_path, "run", 1)


def test_a_file_host_that_is_down_is_a_recorded_failure(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    handler = type("Index", (RemoteLikeIndex,), {"seen": Seen(), "files_origin": dead})
    index, thread = _serve(handler)
    url = f"http://127.0.0.1:{index.server_address[1]}/repo/simple/"
    key = Origin.from_url(dead)
    assert key is not None
    try:
        with RecordingProxy(url, tmp_path / "r.jsonl") as proxy:
            assert request(proxy, "GET", "/r/run/repo/simple/pkg/")[0] == 200
            status, _, body = request(proxy, "GET", f"/o/run/{key.key}/files/pkg.whl")
            assert (status, body) == (502, b"upstream_refused\n")
            records = wait_for_records(proxy.log_path, "run", 2)
    finally:
        index.shutdown()
        index.server_close()
        thread.join(timeout=10)
    assert [(r.op, r.status, r.error) for r in records] == [
        ("listing", 200, None),
        ("download", None, "upstream_refused"),
    ]

"""The proxy in front of an index laid out like a remote one (Artifactory-style paths).

A small real HTTP server on 127.0.0.1 stands in for it: the index lives under /repo/simple/,
listings are gzip-compressed and link files outside ROOT with absolute URLs, and a redirect
uses an origin-relative Location. Everything must come back through the proxy, attributed.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.proxy import RecordingProxy
from tests.infra.conftest import request, wait_for_records

WHEEL = b"PK\x03\x04 not really a wheel" * 100


class RemoteLikeIndex(BaseHTTPRequestHandler):
    """Serves /repo/simple/pkg/ (HTML, gzip), its JSON form, a redirect, and /files/pkg.whl."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        assert isinstance(self.server, ThreadingHTTPServer)
        origin = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/repo/simple/Pkg/":
            self._send(301, b"", {"Location": "/repo/simple/pkg/"})
        elif self.path == "/repo/simple/pkg/" and "json" in self.headers.get("Accept", ""):
            page = {"files": [{"filename": "pkg.whl", "url": f"{origin}/files/pkg.whl"}]}
            self._send(
                200,
                json.dumps(page).encode(),
                {"Content-Type": "application/vnd.pypi.simple.v1+json"},
            )
        elif self.path == "/repo/simple/pkg/":
            html = f'<a href="{origin}/files/pkg.whl">pkg.whl</a>'.encode()
            self._send(
                200,
                gzip.compress(html),
                {"Content-Type": "text/html", "Content-Encoding": "gzip"},
            )
        elif self.path == "/files/pkg.whl":
            self._send(200, WHEEL, {"Content-Type": "application/octet-stream"})
        else:
            self._send(404, b"", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture
def remote_like() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RemoteLikeIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/repo/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_absolute_links_outside_root_and_gzip_listing(remote_like: str, tmp_path: Path) -> None:
    with RecordingProxy(remote_like, tmp_path / "r.jsonl") as proxy:
        assert proxy.index_url_for("run") == f"{proxy.url}/r/run/simple/"
        status, headers, body = request(
            proxy, "GET", "/r/run/simple/pkg/", {"Accept-Encoding": "gzip"}
        )
        assert status == 200
        assert "Content-Encoding" not in headers  # decompressed to be rewritten
        assert body == f'<a href="{proxy.url}/o/run/files/pkg.whl">pkg.whl</a>'.encode()
        status, _, wheel = request(proxy, "GET", "/o/run/files/pkg.whl")
        assert (status, wheel) == (200, WHEEL)

        status, _, page = request(
            proxy, "GET", "/r/run/simple/pkg/", {"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        assert status == 200
        assert json.loads(page)["files"][0]["url"] == f"{proxy.url}/o/run/files/pkg.whl"

        status, headers, _ = request(proxy, "GET", "/r/run/simple/Pkg/")
        assert (status, headers["Location"]) == (301, "/r/run/simple/pkg/")
        records = wait_for_records(proxy.log_path, "run", 4)
    assert [(r.op, r.path, r.status) for r in records] == [
        ("listing", "/repo/simple/pkg/", 200),
        ("download", "/files/pkg.whl", 200),
        ("listing", "/repo/simple/pkg/", 200),
        ("redirect", "/repo/simple/Pkg/", 301),
    ]
    assert records[1].bytes == len(WHEEL)

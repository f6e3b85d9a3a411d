"""The synthetic client checks the hash the listing promised, against a real HTTP server.

The index here is a static PEP 503 tree served by the standard library's HTTP server (a valid
"simple" index: redirects a project URL to its slash, serves index.html and the files). One
listing carries the wheel's true sha256, the other a stale one, as a mirror whose pages lag its
files would.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipstorm.clients.drivers.synthetic import run_in_process
from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.task import ClientTask
from pipstorm.packages.build import build_release

PROJECT, VERSION = "test-package-001", "1.0.0"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def static_index(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/``: ``good/simple/`` lists the wheel's sha256, ``bad/simple/``
    the sha256 of other bytes; both link the same file."""
    root = tmp_path / "www"
    wheel = build_release(PROJECT, VERSION, root / "packages")
    true = hashlib.sha256(wheel.read_bytes()).hexdigest()
    stale = hashlib.sha256(b"an older upload").hexdigest()
    for tree, digest in (("good", true), ("bad", stale)):
        page = root / tree / "simple" / PROJECT / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text(
            f'<a href="../../../packages/{wheel.name}#sha256={digest}">{wheel.name}</a>\n'
        )
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def synthetic_run(index_url: str) -> tuple[int | None, str, str]:
    task = ClientTask("r1", "http", PROJECT, VERSION, index_url)
    outcome = run_in_process(task, 30.0, ProcessRegistry())
    return outcome.exit_code, outcome.stdout_tail, outcome.stderr_tail


def test_the_right_hash_passes(static_index: str) -> None:
    code, out, err = synthetic_run(static_index + "good/simple/")
    assert code == 0, err
    assert out.startswith(f"test_package_001-{VERSION}-py3-none-any.whl (")
    assert "3 requests" in out  # redirect, listing, download


def test_a_sha256_mismatch_fails_the_run(static_index: str) -> None:
    code, out, err = synthetic_run(static_index + "bad/simple/")
    assert code == 1
    assert err.startswith("download: sha256 mismatch for "), err
    assert "3 requests" in out  # it downloaded the file, then refused it

"""``pipstorm.packages.upload``: the corpus onto a real pypiserver and a real devpi-server, twice.

The second upload must send nothing: every file is found in the listings and skipped.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from pipstorm.engine.rundir.records import RequestRecord, load_requests
from pipstorm.infra.credentials import Credentials
from pipstorm.infra.faults.plan import FaultPlan
from pipstorm.infra.faults.spec import parse_faults
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.index_check import IndexCheckError, check_corpus
from pipstorm.packages.upload import (
    PASSWORD_ENV,
    USERNAME_ENV,
    FileResult,
    UploadError,
    UploadSummary,
    distributions,
    upload_files,
    upload_url_for,
)
from pipstorm.packages.upload_wire import listed_files, metadata_fields
from tests.infra.conftest import write_wheel
from tests.infra.devpi import DevpiServer

PROJECTS = 150  # x 2 versions = 300 files


@pytest.fixture(scope="module")
def three_hundred(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("upload-corpus")
    for number in range(PROJECTS):
        for version in ("1.0.0", "1.1.0"):
            write_wheel(directory, f"up_package_{number:03d}", version)
    files = distributions(directory)
    assert len(files) == 2 * PROJECTS
    return files


@pytest.fixture(scope="module")
def devpi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevpiServer]:
    with DevpiServer(tmp_path_factory.mktemp("devpi") / "server") as server:
        yield server


def test_upload_url_for() -> None:
    assert upload_url_for("http://h:1/simple/") == "http://h:1/"
    assert upload_url_for("http://h/root/dev/+simple") == "http://h/root/dev/"
    assert upload_url_for("https://h/api/pypi/repo/simple/") == "https://h/api/pypi/repo/"
    assert upload_url_for("https://h/index/") == "https://h/index/"


def test_credentials_from_the_environment_only() -> None:
    assert Credentials.from_env({}, USERNAME_ENV, PASSWORD_ENV) is None
    env = {"PYPI_USERNAME": "u", "PYPI_PASSWORD": "p4ss"}
    creds = Credentials.from_env(env, USERNAME_ENV, PASSWORD_ENV)
    assert creds == Credentials("u", "p4ss")
    assert "p4ss" not in repr(creds)


def test_listed_files_from_json_and_html() -> None:
    page = {"files": [{"filename": "a-1.whl", "url": "x"}, {"filename": "b-1.tar.gz"}]}
    got = listed_files(
        json.dumps(page).encode(), "application/vnd.pypi.simple.v1+json", "http://h/"
    )
    assert got == {"a-1.whl", "b-1.tar.gz"}
    body = b'<a href="../../+f/d6e/a-1.whl#sha256=1">a-1.whl</a><a href="/p/b%2B-1.whl">b</a>'
    assert listed_files(body, "text/html", "http://h/u/i/+simple/a/") == {"a-1.whl", "b+-1.whl"}


def test_metadata_fields_are_twines(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path, "meta_pkg", "2.0.0")
    fields = dict(metadata_fields(wheel))
    assert fields[":action"] == "file_upload"
    assert (fields["name"], fields["version"], fields["filetype"]) == (
        "meta_pkg",
        "2.0.0",
        "bdist_wheel",
    )
    assert fields["pyversion"] == "py3"
    assert len(fields["sha256_digest"]) == 64


def _upload_twice(index_url: str, files: list[Path], creds: Credentials) -> None:
    seen: list[FileResult] = []
    lock = threading.Lock()

    def progress(result: FileResult) -> None:
        with lock:
            seen.append(result)

    first = upload_files(index_url, files, credentials=creds, progress=progress)
    assert (first.uploaded, first.skipped, first.failures) == (len(files), 0, ())
    assert len(seen) == len(files)
    second = upload_files(index_url, files, credentials=creds)
    assert (second.uploaded, second.skipped, second.failed) == (0, len(files), 0)
    assert "0 uploaded, 300 already there" in second.line()


def test_three_hundred_files_to_pypiserver(three_hundred: list[Path], tmp_path: Path) -> None:
    with LocalPypiserver(tmp_path) as server:
        creds = server.credentials
        _upload_twice(server.index_url, three_hundred, creds)
        assert {p.name for p in tmp_path.iterdir()} == {p.name for p in three_hundred}
        # Without credentials the listing is refused: one line naming the variables.
        with pytest.raises(UploadError, match="PYPI_USERNAME") as excinfo:
            upload_files(server.index_url, three_hundred[:1], credentials=None)
        assert "\n" not in str(excinfo.value)


def test_three_hundred_files_to_devpi(three_hundred: list[Path], devpi: DevpiServer) -> None:
    creds = devpi.credentials
    _upload_twice(devpi.index_url, three_hundred, creds)


def test_an_unreachable_index_is_one_line(three_hundred: list[Path]) -> None:
    with pytest.raises(UploadError, match="cannot reach") as excinfo:
        upload_files("http://127.0.0.1:9/simple/", three_hundred[:2], credentials=None)
    assert "\n" not in str(excinfo.value)


def test_check_corpus_against_pypiserver(three_hundred: list[Path], tmp_path: Path) -> None:
    few = [p for p in three_hundred if p.name.startswith("up_package_000-")]
    with LocalPypiserver(tmp_path) as server:
        creds = server.credentials
        names = {p.name for p in few}
        with pytest.raises(IndexCheckError, match="corpus upload --index-url") as excinfo:
            check_corpus(server.index_url, "up_package_000", names, credentials=creds)
        assert "no project up_package_000" in str(excinfo.value)
        upload_files(server.index_url, few[:1], credentials=creds)
        with pytest.raises(IndexCheckError, match=r"lacks 1 of 2 files"):
            check_corpus(server.index_url, "up_package_000", names, credentials=creds)
        upload_files(server.index_url, few, credentials=creds)
        check_corpus(server.index_url, "up-package-000", names, credentials=creds)
        with pytest.raises(IndexCheckError, match="PYPI_USERNAME"):
            check_corpus(server.index_url, "up_package_000", names, credentials=None)


def _posts(log: Path, count: int) -> list[RequestRecord]:
    """The upload POSTs the proxy recorded, once there are ``count`` (a record follows its
    exchange's end; bounded wait, then whatever is there)."""
    deadline = time.monotonic() + 15
    while True:
        posts = [r for r in load_requests(log)[0] if r.method == "POST"]
        if len(posts) >= count or time.monotonic() > deadline:
            return sorted(posts, key=lambda r: r.ts)
        time.sleep(0.05)


def _through_faulty_proxy(
    spec: str, files: list[Path], tmp_path: Path, **upload: Any
) -> tuple[UploadSummary, Path, Path]:
    """Upload ``files`` to a real pypiserver through the recording proxy with fault ``spec``;
    the summary, the proxy's records and the server's package folder."""
    plan = tmp_path / "faults.json"
    FaultPlan(rules=parse_faults([spec])).write(plan)
    packages = tmp_path / "index"
    packages.mkdir()
    log = tmp_path / "requests.jsonl"
    with (
        LocalPypiserver(packages) as server,
        RecordingProxy(
            server.index_url, log, credentials=server.credentials, faults_path=plan
        ) as proxy,
    ):
        summary = upload_files(proxy.index_url_for("up"), files, credentials=None, **upload)
        _posts(log, 0)
    return summary, log, packages


def test_an_upload_cut_before_it_reached_the_index_is_sent_again(
    three_hundred: list[Path], tmp_path: Path
) -> None:
    files = three_hundred[:4]
    summary, log, packages = _through_faulty_proxy(
        "op=upload,first=1,reset=before", files, tmp_path, concurrency=1, backoff_s=(0.2,)
    )
    assert (summary.uploaded, summary.skipped, summary.failed) == (4, 0, 0), summary.failures
    posts = _posts(log, 5)
    assert [p.error for p in posts] == ["injected_reset_before_headers", None, None, None, None]
    assert sorted(p.name for p in packages.iterdir()) == sorted(p.name for p in files)


class _LosingRelay(BaseHTTPRequestHandler):
    """Relays each request to the index and its answer back, except the first upload's: that
    one reaches the index, and its connection is closed without an answer (a load balancer
    timing out, a connection reset on the way back)."""

    protocol_version = "HTTP/1.1"
    upstream = ""  # the index's origin
    lost: ClassVar[list[str]] = []  # the uploads whose answers were dropped
    posts: ClassVar[list[str]] = []

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn = http.client.HTTPConnection(urlsplit(self.upstream).netloc, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        if self.command == "POST":
            self.posts.append(self.path)
            if not self.lost:
                self.lost.append(self.path)
                self.close_connection = True  # the index has it; the client hears nothing
                return
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _relay

    def log_message(self, format: str, *args: object) -> None:
        return


def test_an_upload_whose_answer_was_lost_is_not_sent_again(
    three_hundred: list[Path], tmp_path: Path
) -> None:
    files = three_hundred[:4]
    packages = tmp_path / "index"
    packages.mkdir()
    with LocalPypiserver(packages) as server:
        _LosingRelay.upstream, _LosingRelay.lost, _LosingRelay.posts = server.url, [], []
        relay = ThreadingHTTPServer(("127.0.0.1", 0), _LosingRelay)
        threading.Thread(target=relay.serve_forever, daemon=True).start()
        try:
            creds = server.credentials
            summary = upload_files(
                f"http://127.0.0.1:{relay.server_address[1]}/simple/",
                files,
                credentials=creds,
                concurrency=1,
                backoff_s=(0.2,),
            )
        finally:
            relay.shutdown()
            relay.server_close()
    assert len(_LosingRelay.lost) == 1
    assert (summary.uploaded, summary.skipped, summary.failed) == (4, 0, 0), summary.failures
    assert len(_LosingRelay.posts) == 4  # one per file: the one that landed was not resent
    landed = [line for line in summary.notes if "its answer was lost" in line]
    assert len(landed) == 1
    assert sorted(p.name for p in packages.iterdir()) == sorted(p.name for p in files)


def test_a_file_that_keeps_failing_is_reported_after_its_retries(
    three_hundred: list[Path], tmp_path: Path
) -> None:
    summary, log, _ = _through_faulty_proxy(
        "op=upload,status=503", three_hundred[:1], tmp_path, backoff_s=(0.1, 0.1)
    )
    assert summary.failed == 1
    assert summary.failures[0].status == 503
    assert "after 3 attempts" in summary.failures[0].detail
    assert len(_posts(log, 3)) == 3  # the first try and one per wait


def test_a_refusal_is_not_retried(three_hundred: list[Path], tmp_path: Path) -> None:
    summary, log, _ = _through_faulty_proxy(
        "op=upload,status=400", three_hundred[:1], tmp_path, backoff_s=(0.1, 0.1)
    )
    assert (summary.failed, summary.failures[0].status) == (1, 400)
    assert len(_posts(log, 1)) == 1

"""``pipstorm.packages.upload``: the corpus onto a real pypiserver and a real devpi-server, twice.

The second upload must send nothing: every file is found in the listings and skipped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.index_check import IndexCheckError, check_corpus
from pipstorm.packages.upload import (
    PASSWORD_ENV,
    USERNAME_ENV,
    FileResult,
    UploadError,
    distributions,
    listed_files,
    metadata_fields,
    upload_files,
    upload_url_for,
)
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

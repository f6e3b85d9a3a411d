"""Fixtures for infra tests: a tiny set of real wheels, a running pypiserver, a scrubbed env.

The wheels are written with zipfile so these tests do not depend on the corpus builder; they
are valid enough for pip (name, version, METADATA, WHEEL, RECORD).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipstorm.engine.rundir.records import RequestRecord, load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver

PROJECT = "test_package_000"
VERSIONS = ("1.0.0", "1.1.0")
BIG_PROJECT = "big_package"
BIG_SIZE = 50 * 1024 * 1024


@dataclass(frozen=True)
class Corpus:
    """A directory of wheels and the facts tests check against."""

    directory: Path
    wheel: Path  # test_package_000 1.1.0
    big_wheel: Path  # ~50 MB, stored uncompressed


def write_wheel(directory: Path, name: str, version: str, payload: bytes = b"") -> Path:
    """Write a minimal valid ``py3-none-any`` wheel and return its path."""
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: pipstorm-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    if payload:
        files[f"{name}/payload.bin"] = payload
    record_lines = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{arcname},sha256={digest},{len(data)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    directory = tmp_path_factory.mktemp("wheels")
    wheels = [write_wheel(directory, PROJECT, version) for version in VERSIONS]
    big = write_wheel(directory, BIG_PROJECT, "1.0.0", payload=os.urandom(BIG_SIZE))
    return Corpus(directory=directory, wheel=wheels[-1], big_wheel=big)


@pytest.fixture(scope="session")
def pypiserver(corpus: Corpus) -> Iterator[LocalPypiserver]:
    with LocalPypiserver(corpus.directory) as server:
        yield server


def scrubbed_env() -> dict[str, str]:
    """The environment for a real pip: no injected PIP_*/POETRY_*/UV_* and no pip.conf."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "POETRY_", "UV_"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


@pytest.fixture
def proxy(pypiserver: LocalPypiserver, tmp_path: Path) -> Iterator[RecordingProxy]:
    with RecordingProxy(
        pypiserver.index_url, tmp_path / "requests.jsonl", credentials=pypiserver.credentials
    ) as running:
        yield running


def wait_for_records(
    log: Path, run_id: str | None, count: int, timeout: float = 15.0
) -> list[RequestRecord]:
    """The run's records once there are ``count`` of them (a record follows its response)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in load_requests(log)[0] if r.run_id == run_id] if log.exists() else []
        if len(records) >= count or time.monotonic() > deadline:
            assert len(records) == count, records
            return records
        time.sleep(0.02)


def proxy_address(proxy: RecordingProxy) -> tuple[str, int]:
    return proxy.host, proxy.port


def request(
    proxy: RecordingProxy,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the proxy with http.client; status, headers, body."""
    conn = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()

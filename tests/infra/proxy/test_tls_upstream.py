"""An https index behind the proxy (CodeArtifact, Artifactory and most private indexes are
https): the proxy speaks TLS upstream with the system's verification, relays listings (links
rewritten) and wheels byte for byte, and an index whose certificate it cannot verify is a
recorded transport error, never a silent pass. The certificate is a throwaway self-signed one
for 127.0.0.1, trusted through ``SSL_CERT_FILE`` as a user would trust a private CA."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.infra.proxy.control import RecordingProxy
from tests.infra.conftest import request, wait_for_records
from tests.support.pages import serving

WHEEL = os.urandom(3 * 1024 * 1024)  # several reads and writes through the TLS stream
WHEEL_PATH = "/packages/demo-1.0-py3-none-any.whl"
LISTING = f'<a href="{WHEEL_PATH}#sha256={hashlib.sha256(WHEEL).hexdigest()}">demo</a>'.encode()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem): self-signed for 127.0.0.1, one day."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def https_index(certificate: tuple[Path, Path]) -> Iterator[str]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    pages = {
        "/simple/demo/": (200, "text/html", LISTING),
        WHEEL_PATH: (200, "application/octet-stream", WHEEL),
    }
    with serving(pages, tls=tls) as url:
        yield url


def test_an_https_index_is_relayed_with_verification(
    https_index: str,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the proxy inherits it
    log = tmp_path / "requests.jsonl"
    with RecordingProxy(f"{https_index}/simple/", log) as proxy:
        base = proxy.index_url_for("r1").removeprefix(proxy.url)
        status, _, listing = request(proxy, "GET", f"{base}demo/")
        assert status == 200, listing
        assert f'href="/r/r1{WHEEL_PATH}#sha256='.encode() in listing  # rewritten to the proxy
        status, _, wheel = request(proxy, "GET", f"/r/r1{WHEEL_PATH}")
        assert status == 200 and wheel == WHEEL
        records = wait_for_records(log, "r1", 2)
    assert [(r.status, r.error) for r in records] == [(200, None), (200, None)]
    assert records[1].bytes == len(WHEEL)


def test_an_https_index_it_cannot_verify_is_a_recorded_transport_error(
    https_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    log = tmp_path / "requests.jsonl"
    with RecordingProxy(f"{https_index}/simple/", log) as proxy:
        base = proxy.index_url_for("r1").removeprefix(proxy.url)
        status, _, body = request(proxy, "GET", f"{base}demo/")
        (record,) = wait_for_records(log, "r1", 1)
    assert status == 502, body
    assert record.status is None
    assert record.error is not None and "SSLCertVerificationError" in record.error, record

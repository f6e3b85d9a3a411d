"""Fixtures for client tests that need the real thing: a small corpus, the local pypiserver
(uploads allowed), the recording proxy, and warm launchers that are closed after each test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipstorm.clients.warm.launchers import Launchers
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec


@dataclass(frozen=True)
class Index:
    """The running target behind the proxy, as client tests use it."""

    proxy: RecordingProxy
    server: LocalPypiserver
    requests_log: Path


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("client-index")
    corpus = cached_corpus(CorpusSpec(packages=10), root / "cache")
    uploads = root / "uploads"
    uploads.mkdir()
    log = root / "requests.jsonl"
    with (
        LocalPypiserver(corpus.directory, upload_dir=uploads) as server,
        RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
    ):
        yield Index(proxy=proxy, server=server, requests_log=log)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def checkout_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client interpreter that imports this checkout's test helpers (``tests.clients.dumpenv``).

    pipstorm's own venv does not: installed, pipstorm puts nothing of the checkout on sys.path.
    """
    root = tmp_path_factory.mktemp("checkout-python")
    subprocess.run(
        [sys.executable, "-m", "virtualenv", "--quiet", "--no-pip", "--no-wheel", str(root)],
        check=True,
    )
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "checkout.pth").write_text(f"{REPO}\n")
    return root / "bin" / "python"


@pytest.fixture
def launchers(tmp_path: Path) -> Iterator[Launchers]:
    running = Launchers(tmp_path / "launchers")
    (tmp_path / "launchers").mkdir()
    try:
        yield running
    finally:
        running.close()

"""Fixtures for client tests that need the real thing: a small corpus, the local pypiserver
(uploads allowed), the recording proxy, and warm launchers that are closed after each test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients.launcher import Launchers
from infra.proxy import RecordingProxy
from infra.pypiserver_target import LocalPypiserver
from packages.cache import cached_corpus
from packages.spec import CorpusSpec


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


@pytest.fixture
def launchers(tmp_path: Path) -> Iterator[Launchers]:
    running = Launchers(tmp_path / "launchers")
    (tmp_path / "launchers").mkdir()
    try:
        yield running
    finally:
        running.close()

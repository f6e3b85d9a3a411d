"""Real pip, poetry and uv through the real proxy against indexes that are not pypiserver.

devpi-server (``/<user>/<index>/+simple/``, files at ``../../+f/...``, PEP 691 JSON), a static
index whose files (and PEP 658 metadata) live on a second origin, and a PEP 691 JSON-only index
with GitLab's path shape. Every request must be attributed to its run and classified as what it
was (listing, download, metadata), and the index's credentials must never reach the file host.
Uses nothing of the engine: records are read straight from the proxy's JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import execute
from pipstorm.clients.task import ClientTask
from pipstorm.infra.credentials import Credentials
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from pipstorm.packages.upload import upload_files
from tests.e2e.conftest import pipstorm
from tests.e2e.index_servers import (
    FILES_ORIGIN,
    Seen,
    json_only,
    load_dists,
    serving,
    split_origin,
)
from tests.infra.devpi import DevpiServer

pytestmark = pytest.mark.e2e

# 4 projects on 2 levels: the two above depend on one below each, so resolvers walk a graph.
SPEC = CorpusSpec(packages=4, dep_fan_out=1, dep_depth=1)
PIN = ("test-package-000", "1.1.0")
CLIENTS = ("pip", "poetry", "uv")
SERVED = {"listing", "download", "metadata"}


@dataclass
class Index:
    """One index behind its own proxy."""

    proxy: RecordingProxy
    file_host: Seen | None = None

    def records(self) -> list[dict[str, object]]:
        lines = self.proxy.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_corpus(SPEC, tmp_path_factory.mktemp("any-index") / "cache").directory


@pytest.fixture(scope="module")
def devpi_index(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("devpi")
    with DevpiServer(root / "server") as server:
        creds = server.credentials
        summary = upload_files(
            server.index_url, sorted(corpus_dir.glob("*.whl")), credentials=creds
        )
        assert summary.failed == 0 and summary.uploaded == SPEC.packages * len(SPEC.versions)
        with RecordingProxy(
            server.index_url, root / "requests.jsonl", credentials=server.credentials
        ) as proxy:
            yield Index(proxy)


@pytest.fixture(scope="module")
def split_index(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("split")
    credentials = Credentials.generate()
    index_app, files_app, seen = split_origin(load_dists(corpus_dir), credentials)
    with serving(files_app) as files_url:
        index_app[FILES_ORIGIN] = files_url
        with (
            serving(index_app) as index_url,
            RecordingProxy(
                index_url + "/index/", root / "requests.jsonl", credentials=credentials
            ) as proxy,
        ):
            yield Index(proxy, file_host=seen)


@pytest.fixture(scope="module")
def json_index(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("json")
    with serving(json_only(load_dists(corpus_dir))) as url:
        index_url = url + "/api/v4/projects/42/packages/pypi/simple/"
        with RecordingProxy(index_url, root / "requests.jsonl") as proxy:
            yield Index(proxy)


def _run(index: Index, run_id: str, client: str) -> None:
    """One client run through the proxy; checks attribution and classification."""
    task = ClientTask(
        run_id=run_id,
        client=client,
        project=PIN[0],
        version=PIN[1],
        index_url=index.proxy.index_url_for(run_id),
        resolve_deps=client == "pip",
    )
    result = execute(task, temp_root=None, registry=ProcessRegistry())
    assert result.outcome == "ok", (result.error, result.stderr_tail)
    records = index.records()
    assert all(r["run_id"] for r in records), [r for r in records if not r["run_id"]]
    mine = [r for r in records if r["run_id"] == run_id]
    ops = {str(r["op"]) for r in mine}
    assert ops <= SERVED, [(r["op"], r["path"]) for r in mine if r["op"] not in SERVED]
    assert "listing" in ops
    assert ops & {"download", "metadata"}  # a lock may need metadata only
    if client == "pip":
        assert "download" in ops  # pip download fetches the files
    assert all(r["status"] in (200, 206) for r in mine), mine


@pytest.mark.parametrize("client", CLIENTS)
def test_devpi(devpi_index: Index, client: str) -> None:
    _run(devpi_index, f"devpi-{client}", client)


@pytest.mark.parametrize("client", CLIENTS)
def test_files_on_a_second_origin(split_index: Index, client: str) -> None:
    run_id = f"split-{client}"
    _run(split_index, run_id, client)
    mine = [r for r in split_index.records() if r["run_id"] == run_id]
    elsewhere = [r for r in mine if str(r["path"]).startswith("http://")]
    assert elsewhere and {r["op"] for r in elsewhere} <= {"download", "metadata"}
    assert split_index.file_host is not None
    assert split_index.file_host.requests and split_index.file_host.leaked == []


@pytest.mark.parametrize("client", CLIENTS)
def test_json_only_index(json_index: Index, client: str) -> None:
    _run(json_index, f"json-{client}", client)


def test_a_run_against_devpi_is_judged_on_real_samples(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The CLI end to end: ``corpus upload`` onto an empty devpi, then ``run --index-url``;
    every request attributed, listings and downloads classified, latency thresholds measured."""
    root = tmp_path_factory.mktemp("devpi-run")
    with DevpiServer(root / "server") as server:
        env = {
            **e2e_env,
            "PYPI_USERNAME": server.credentials.username,
            "PYPI_PASSWORD": server.credentials.password,
        }
        upload = pipstorm(
            ["corpus", "upload", "--index-url", server.index_url, "--quiet"],
            env,
            tmpdir=root / "t1",
        )
        assert upload.returncode == 0, upload.stderr
        assert "300 uploaded" in upload.stdout
        proc = pipstorm(
            [
                *("run", "--profile", "light_load", "--duration", "8", "--quiet"),
                *("--mix", "pip=0.5,uv=0.5", "--index-url", server.index_url),
                *("--results", str(root / "results")),
            ],
            env,
            tmpdir=root / "t2",
        )
    assert proc.returncode in (0, 1, 3), proc.stderr  # judged (3: generator-bound), not an error
    (run_dir,) = list((root / "results").iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["requests"]["unattributed_count"] == 0
    operations = report["operations"]
    assert set(operations) <= SERVED and operations["listing"]["count"] > 0
    assert operations["download"]["count"] > 0
    measured = {t["key"]: t["measured"] for t in report["thresholds"]}
    assert measured["p95_listing_ms"] is not None
    assert measured["p99_download_ms"] is not None
    assert report["clients"]["all"]["count"] >= 1

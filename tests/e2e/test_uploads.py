"""Uploads and the realism check with real clients, a real pypiserver and the real proxy on
loopback: an upload profile publishes real files that can be downloaded afterwards, a re-upload
of the same file is a ``conflict``, and ``pipstorm realism`` sets the synthetic client's
requests per run beside pip's."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import execute
from pipstorm.clients.task import ClientTask
from pipstorm.engine.rundir.records import load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import pipstorm

pytestmark = pytest.mark.e2e


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: its size and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_an_upload_profile_publishes_files_that_can_be_downloaded(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    corpus = cached_corpus(CorpusSpec(), Path(e2e_env["PIPSTORM_CACHE_DIR"])).directory
    before = files_of(corpus)
    proc = pipstorm(
        [
            *("run", "--profile", "upload_storm", "--duration", "10"),
            *("--results", str(results), "--quiet", "--allow-generator-bound"),
            # 25 twine uploads at once on 2 cores: the limit is generous (this machine's
            # speed is not the subject), but upload_storm's own threshold is still judged
            *("--threshold", "p95_upload_ms=60000"),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list(results.iterdir())
    clients = [json.loads(line) for line in (run_dir / "clients.jsonl").read_text().splitlines()]
    assert len(clients) == 25  # tick 0 of upload_storm is a burst: 5 x 5 uploads
    assert {c["outcome"] for c in clients} == {"ok"}, [c["error"] for c in clients]
    assert {c["client_version"] for c in clients} == {"7.0.0"}
    requests, _ = load_requests(run_dir / "requests.jsonl")
    assert [r.status for r in requests if r.op == "upload"] == [200] * 25
    assert all(r.user_agent and r.user_agent.startswith("twine/") for r in requests)
    uploaded = sorted((run_dir / "uploads").glob("*.whl"))
    assert len(uploaded) == 25  # unique versions: no upload overwrote or refused another
    # Afterwards the files are served like any other: GET them from a server over that folder.
    with LocalPypiserver(run_dir / "uploads") as server:
        for wheel in uploaded[:3]:
            request = urllib.request.Request(f"{server.url}packages/{wheel.name}")  # noqa: S310
            request.add_header("Authorization", server.credentials.basic_auth_header())
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                assert response.read() == wheel.read_bytes()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["operations"]["upload"]["count"] == 25
    # upload_storm judges upload latency instead of listing and download latency
    limits = {t["key"]: t["limit"] for t in report["thresholds"]}
    assert limits["p95_upload_ms"] == 60000
    assert not {"p95_listing_ms", "p99_download_ms"} & set(limits)
    # the uploads went to the run's folder; the shared corpus cache is byte for byte as it was
    assert files_of(corpus) == before


def test_a_reupload_of_the_same_file_is_a_conflict_not_a_failure(
    e2e_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPSTORM_CACHE_DIR", e2e_env["PIPSTORM_CACHE_DIR"])  # the cached twine
    corpus = cached_corpus(CorpusSpec(packages=5), tmp_path / "cache")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    log = tmp_path / "requests.jsonl"
    with (
        LocalPypiserver(corpus.directory, upload_dir=uploads) as server,
        RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
    ):

        def upload(run_id: str, *extra: str) -> tuple[str, str | None]:
            task = ClientTask(
                run_id=run_id,
                client="twine",
                project="test-package-002",
                version="1.0.0",
                index_url=proxy.index_url_for(run_id),
                extra_args=extra,
            )
            result = execute(task, temp_root=tmp_path, registry=ProcessRegistry())
            return result.outcome, result.error

        assert upload("first") == ("ok", None)
        (published,) = uploads.iterdir()
        # The second run publishes its own fresh wheel, then the first run's file once more.
        outcome, error = upload("again", str(published))
    assert outcome == "conflict", error
    assert error is not None and "already has" in error
    assert len(list(uploads.iterdir())) == 2  # the refused file was not overwritten
    requests, _ = load_requests(log)
    statuses = [r.status for r in requests if r.run_id == "again" and r.op == "upload"]
    # pypiserver answers 409 for an existing file, 400 when the User-Agent says twine.
    assert statuses[0] == 200 and statuses[1] in (400, 409)


def test_realism_sets_the_synthetic_requests_beside_pips(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("realism", "--profile", "light_load", "--duration", "10"),
            *("--results", str(results), "--quiet"),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode == 0, proc.stderr
    (root,) = list(results.iterdir())
    data = json.loads((root / "realism.json").read_text())
    synthetic, real = data["synthetic"], data["real"]
    assert synthetic["clients"] == {"http": 1.0} and real["clients"] == {"pip": 1.0}
    assert synthetic["runs"] == real["runs"] == 3
    assert synthetic["outcomes"] == real["outcomes"] == {"ok": 3}
    per_run = {
        side: {op: o["per_run"] for op, o in data[side]["operations"].items()}
        for side in ("synthetic", "real")
    }
    assert per_run["synthetic"] == {"redirect": 1, "listing": 1, "download": 1}
    assert per_run["real"] == {"listing": 1, "download": 1}
    assert real["cpu_s"]["mean"] > synthetic["cpu_s"]["mean"]
    assert any("redirect" in finding for finding in data["findings"])
    text = (root / "realism.md").read_text()
    assert "Requests per client run, by operation" in text
    assert "redirect per run" in proc.stdout

"""A sharded run followed while it plays: real Dask scheduler and worker processes on loopback.

- ``--dashboard``: the page of a 2-shard run, loaded twice in a real headless Chromium during
  the run, shows the whole run growing (the coordinator's folder fills as the shards' lines
  arrive), both shards in its per-shard table, and no JavaScript error; ``/state.json`` changes
  between two reads; the coordinator prints its progress line.
- ``--abort-on-fail`` against a real index server that answers the load 503 (and the
  coordinator's and workers' preflight, which is not the load, its listing): every shard is
  stopped as on Ctrl-C, the report of the part that ran says why in every format and in JUnit,
  exit 1, nothing left running or in TMPDIR.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipstorm.clients.drivers.synthetic import USER_AGENT
from pipstorm.engine.run.target.opening import corpus_files
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import LATENCY_OFF, left_running, leftovers, pipstorm
from tests.e2e.test_dashboard import _requests, _shown, _state, _wait_for
from tests.engine.chromium_shot import needs_chromium
from tests.engine.run.live.test_dashboard import dump_dom

pytestmark = pytest.mark.e2e

#: 30 s of synthetic http runs from 2 shards: ~2 runs a tick of 2 s, bursts x3 every 10 s.
PROFILE = """
clients = 2
duration_s = 30
tick_s = 2
burst_every_s = 10
burst_multiplier = 3
mix = {http = 1.0}
"""


@needs_chromium
def test_the_page_of_a_sharded_run_follows_it_as_it_plays(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tmp_path / "steady.toml"
    profile.write_text(PROFILE)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipstorm", "run", "--profile", str(profile)),
                *("--shards", "2", "--workers", "1", "--results", str(tmp_path / "results")),
                *LATENCY_OFF,
                "--dashboard",
            ],
            env={**e2e_env, "TMPDIR": str(tmpdir)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 180
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        first = log.read_text().splitlines()[0]
        match = re.fullmatch(r"pipstorm: dashboard at (http://127\.0\.0\.1:\d+/)", first)
        assert match is not None, first  # the URL comes first, on loopback
        url = match.group(1)
        _wait_for(url, 0, deadline)
        feed_early = _state(url)
        early = dump_dom(url, tmp_path / "chromium-1")
        _wait_for(url, _shown(early, "requests") + 10, deadline)
        feed_later = _state(url)
        later = dump_dom(url, tmp_path / "chromium-2")
        assert proc.wait(timeout=240) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The JSON feed moved on while the run played, from both shards' lines.
    assert feed_early["state"] == feed_later["state"] == "running"
    assert _requests(feed_later) > _requests(feed_early) > 0
    assert float(feed_later["elapsed_s"]) > float(feed_early["elapsed_s"])  # type: ignore[arg-type]
    shards = feed_later["shards"]
    assert isinstance(shards, list) and [s["index"] for s in shards] == [0, 1]
    assert all(s["clock_offset_ms"] is not None for s in shards)
    assert feed_later["cpu_by_shard"]["shards"] == [0, 1]  # type: ignore[index]
    for dom in (early, later):
        assert 'id="js-errors">0<' in dom
        assert '<section id="shards">' in dom
        assert re.search(r'id="shard-rows"><tr><td>0</td>.*?</tr><tr><td>1</td>', dom), dom
        assert 'id="line">running' in dom
        assert dom.count("<canvas") >= 7
    assert _shown(later, "requests") > _shown(early, "requests") > 0
    assert _shown(later, "runs-finished") >= _shown(early, "runs-finished")
    # The coordinator's own progress line (one a minute off a terminal, and the last one).
    said = log.read_text()
    assert re.search(r"\[\s*\d+/30 s\] runs \d+ launched, \d+ in flight, 0 failed \| ", said), said
    (run_dir,) = (tmp_path / "results").iterdir()
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert [s["status"] for s in report["shards"]] == ["ok", "ok"]
    lines = (run_dir / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    stamps = [json.loads(line)["ts"] for line in lines]
    assert stamps == sorted(stamps)  # streamed as they came, in time order at the end
    assert {json.loads(line)["shard"] for line in lines} == {0, 1}
    assert left_running(tmpdir) == []
    assert leftovers(tmpdir) == []


class _FailingIndex(BaseHTTPRequestHandler):
    """503 to the load (the synthetic http client); to anyone else (the coordinator's and the
    workers' preflight, before any load) every project's listing."""

    def do_GET(self) -> None:
        load = self.headers.get("User-Agent", "") == USER_AGENT
        page = _PAGES.get(self.path.strip("/").split("/")[-1])
        if load or page is None:
            body = b"overloaded\n"
            self.send_response(503 if load else 404)
        else:
            body = page
            self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


_CORPUS = CorpusSpec()
_PAGES = {
    project: "".join(
        f'<a href="/files/{html.escape(name)}">{html.escape(name)}</a>\n'
        for name in sorted(corpus_files(_CORPUS, project))
    ).encode()
    for project in _CORPUS.project_names()
}


@pytest.fixture
def failing_index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_abort_on_fail_stops_every_shard_and_reports_why(
    e2e_env: dict[str, str], tmp_path: Path, failing_index: str
) -> None:
    profile = tmp_path / "steady.toml"
    profile.write_text(PROFILE.replace("duration_s = 30", "duration_s = 60"))
    results, junit, tmpdir = tmp_path / "results", tmp_path / "junit.xml", tmp_path / "tmp"
    summary = tmp_path / "step-summary.md"
    done = pipstorm(
        [
            *("run", "--profile", str(profile), "--index-url", failing_index),
            *("--shards", "2", "--workers", "1", "--results", str(results), "--quiet"),
            *(*LATENCY_OFF, "--abort-on-fail", "--junit", str(junit)),
        ],
        {**e2e_env, "GITHUB_STEP_SUMMARY": str(summary)},
        tmpdir=tmpdir,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "aborting (--abort-on-fail): max_5xx:" in done.stderr
    assert "stopping every shard" in done.stderr
    (run_dir,) = results.iterdir()
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["aborted"]["reason"].startswith("max_5xx: ")
    assert not run["interrupted"]
    assert [s["status"] for s in run["shards"]] == ["interrupted", "interrupted"]
    # Stopped early: most of the planned runs were never handed out, by either shard.
    assert run["runs_dispatched"] < run["runs_planned"] // 2, run["runs_dispatched"]
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "fail"
    assert report["aborted"] == run["aborted"]
    assert any(n.startswith("The run was aborted at t=") for n in report["notes"])
    assert "[aborted run]" in (run_dir / "report.md").read_text(encoding="utf-8")
    assert "aborted" in (run_dir / "report.html").read_text(encoding="utf-8")
    assert "thresholds failed [aborted run]**" in summary.read_text(encoding="utf-8")
    statuses = {
        json.loads(x)["status"] for x in (run_dir / "requests.jsonl").read_text().splitlines()
    }
    assert statuses == {503}  # the 5xx the threshold counted came from the index
    root = ET.parse(junit).getroot()  # noqa: S314 - the file this run wrote
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["max_5xx <= 0"].find("failure") is not None
    stopped = cases["the run played its whole plan"].find("failure")
    assert stopped is not None and "max_5xx" in stopped.get("message", "")
    # Stopped as on Ctrl-C: clients, proxies, pools and the cluster gone, scratch removed.
    assert left_running(tmpdir) == []
    assert leftovers(tmpdir) == []

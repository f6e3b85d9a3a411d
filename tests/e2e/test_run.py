"""A shortened light_load against the embedded target, judged and reported, with every request
attributed to the pip run that made it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from pipstorm.engine.rundir.records import load_clients, load_requests
from tests.e2e.conftest import LATENCY_OFF, leftovers, pipstorm

pytestmark = pytest.mark.e2e


def only_run_dir(results: Path) -> Path:
    (run_dir,) = list(results.iterdir())
    return run_dir


def test_short_light_load_passes_and_attributes_every_request(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("run", "--profile", "light_load", "--duration", "30", "--results", str(results)),
            *LATENCY_OFF,
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(results)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "pass"
    # judged on errors, not on latency (switched off: this machine's load is not the subject)
    assert {t["key"] for t in report["thresholds"]} >= {"error_rate", "max_5xx"}
    assert not {t["key"] for t in report["thresholds"]} & {"p95_listing_ms", "p99_download_ms"}
    assert (run_dir / "report.md").read_text().lstrip().startswith("#")

    t0 = json.loads((run_dir / "run.json").read_text())["started"]
    clients, skipped_c = load_clients(run_dir / "clients.jsonl")
    requests, skipped_r = load_requests(run_dir / "requests.jsonl")
    assert skipped_c == skipped_r == 0
    assert len(clients) == 9  # 3 ticks x 3 clients
    assert all(c.outcome == "ok" and c.exit_code == 0 for c in clients)
    assert all(r.run_id is not None for r in requests), "unattributed request"
    # Each pip run opens its own client connection(s); the proxy's to the index are counted on
    # the request that opened each, and the report shows both figures.
    assert all(r.conn is not None and isinstance(r.upstream_new, bool) for r in requests)
    runs_of_conn = defaultdict(set)
    for r in requests:
        runs_of_conn[r.conn].add(r.run_id)
    assert all(len(runs) == 1 for runs in runs_of_conn.values())  # no connection shared by runs
    figures = report["requests"]
    assert figures["client_connections"] == len(runs_of_conn) >= len(clients)
    assert figures["upstream_connections"] == sum(1 for r in requests if r.upstream_new) >= 1
    assert f"connections: {len(runs_of_conn)} opened by clients" in proc.stderr

    by_run: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for r in requests:
        assert r.run_id is not None
        by_run[r.run_id].append((r.ts, r.op, r.path))
    assert set(by_run) == {c.run_id for c in clients}
    for client in clients:
        ordered = sorted(by_run[client.run_id])
        ops = [op for _, op, _ in ordered]
        assert ops == ["listing", "download"], (client.run_id, ordered)
        listing_path, file_path = ordered[0][2], ordered[1][2]
        assert listing_path.endswith(f"/simple/{client.project}/")
        assert file_path.split("#")[0].endswith(
            f"{client.project.replace('-', '_')}-{client.version}-py3-none-any.whl"
        )
        # the request happened while the client ran, which launched at (never before) its
        # intended start, tick x 10 s after time zero, and its lag is recorded as such
        assert client.launched is not None
        assert client.launched <= ordered[0][0] <= client.ended
        assert client.intended == pytest.approx(t0 + 10.0 * client.tick, abs=1e-3)
        assert client.launched >= client.intended - 0.05  # 5 ms-scale clock conversions
        assert client.lag_s == pytest.approx(client.launched - client.intended, abs=1e-6)
    assert leftovers(tmp_path / "tmp") == []


def test_a_threshold_the_run_cannot_meet_fails_it(e2e_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            "run",
            "--profile",
            "light_load",
            "--duration",
            "10",
            "--results",
            str(results),
            "--threshold",
            "p95_listing_ms=0.001",
            "--quiet",
            "--allow-generator-bound",  # a missed latency threshold under a busy generator: 3
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads((only_run_dir(results) / "report.json").read_text())
    assert report["verdict"] == "fail"
    (failed,) = [t for t in report["thresholds"] if not t["passed"]]
    assert failed["key"] == "p95_listing_ms"
    assert failed["limit"] == 0.001
    assert failed["measured"] > 0.001
    md = (only_run_dir(results) / "report.md").read_text()
    assert "p95_listing_ms" in md

"""The realism comparison from two sides (no runs): findings, markdown, JSON; the upload
profiles; conflicts counted apart from failures."""

from __future__ import annotations

import json
from pathlib import Path

from pipstorm.engine.analysis.realism import OperationSide, Realism, Side, findings
from pipstorm.engine.analysis.stats import compute_stats, distribution
from pipstorm.engine.report.realism import render_markdown, terminal_summary
from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord


def op(per_run: float, runs: int = 4) -> OperationSide:
    count = round(per_run * runs)
    return OperationSide(
        count=count,
        per_run=per_run,
        bytes=1000 * count,
        total_ms=distribution([5.0, 10.0, 20.0]),
        error_rate=0.0,
    )


def side(label: str, ops: dict[str, float], cpu: float, ranges: float = 0.0) -> Side:
    return Side(
        label=label,
        run_dir=f"/results/{label}",
        clients={"http": 1.0} if label == "synthetic" else {"pip": 0.5, "poetry": 0.5},
        runs=4,
        outcomes={"ok": 4},
        run_error_rate=0.0,
        requests=round(sum(ops.values()) * 4),
        requests_per_run=sum(ops.values()),
        bytes_per_run=2000.0,
        request_error_rate=0.0,
        range_requests_per_run=ranges,
        cpu_s=distribution([cpu, cpu * 1.1]),
        client_s=distribution([0.5, 0.7]),
        operations={name: op(n) for name, n in ops.items()},
        user_agents={"pip/25.3": 8} if label == "real" else {"pipstorm-http/0.1.0": 12},
        interrupted=False,
    )


SYNTHETIC = side("synthetic", {"redirect": 1, "listing": 1, "download": 1}, 0.002)
REAL = side("real", {"listing": 3.5, "download": 2, "metadata": 2}, 0.4, ranges=1.5)


def test_findings_name_what_the_synthetic_client_misses_and_adds() -> None:
    found = "\n".join(findings(SYNTHETIC, REAL))
    assert "2 metadata request(s) per run that the synthetic client never makes" in found
    assert "synthetic client makes 1 redirect request(s) per run that real clients" in found
    assert "listing: 3.5 request(s) per real run, 1 per synthetic run" in found
    assert "1.5 Range request(s)" in found
    assert "CPU-s" in found and "x)" in found


def test_markdown_and_json_show_both_sides_per_operation(tmp_path: Path) -> None:
    realism = Realism(
        profile="light_load",
        seed=1,
        dir=tmp_path,
        synthetic=SYNTHETIC,
        real=REAL,
        findings=tuple(findings(SYNTHETIC, REAL)),
    )
    text = render_markdown(realism)
    assert "## Requests per client run, by operation" in text
    assert "| redirect    | 1                  | 0" in text
    assert "| metadata    | 0                  | 2" in text
    assert "What the synthetic test misses" in text
    data = json.loads(json.dumps(realism.to_dict()))
    assert data["synthetic"]["operations"]["redirect"]["per_run"] == 1
    assert data["real"]["operations"]["listing"]["total_ms"]["p95"] > 0
    assert "redirect per run" in terminal_summary(realism)
    assert not realism.interrupted


def test_the_upload_profiles_are_built_in() -> None:
    incident = BUILTIN_PROFILES["production_incident"]
    uploads = BUILTIN_PROFILES["production_incident_with_uploads"]
    assert uploads.client_mix == {"pip": 0.7, "twine": 0.3}
    assert (uploads.clients, uploads.duration_s, uploads.burst_every_s) == (
        incident.clients,
        incident.duration_s,
        incident.burst_every_s,
    )
    assert uploads.burst_multiplier == incident.burst_multiplier
    assert BUILTIN_PROFILES["upload_storm"].client_mix == {"twine": 1.0}


def test_a_conflict_is_counted_apart_from_failures() -> None:
    def run(run_id: str, outcome: str) -> ClientRecord:
        return ClientRecord(
            run_id, "twine", "p", "1.0.0", 0, False, 0.0, 0.0, 0.0, 1.0, 0.0, 0, outcome
        )

    def upload(status: int) -> RequestRecord:
        return RequestRecord(
            ts=0.0, op="upload", method="POST", path="/", status=status, total_ms=5.0, run_id="r1"
        )

    stats = compute_stats(
        [upload(200), upload(409)], [run("r1", "ok"), run("r2", "conflict"), run("r3", "failed")]
    )
    assert stats.clients.all.by_outcome == {"conflict": 1, "failed": 1, "ok": 1}
    assert stats.clients.all.failed_count == 1
    assert stats.requests.error_count == 0  # the index refusing a duplicate is no error

"""The replay beside its log: both sides on the log's clock, per minute and per operation, and
the runs' onset; then replay.md and replay.json as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipstorm.engine.analysis.replay import LogSample, compare_replay
from pipstorm.engine.report.replay import terminal_summary, write_replay
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

T0 = 1_790_000_000.0


def client(run_id: str, intended: float, outcome: str = "ok") -> ClientRecord:
    return ClientRecord(
        run_id=run_id, client="pip", project="a", version="1.0.0", tick=0, burst=False,
        intended=intended, started=intended, launched=intended, ended=intended + 2, lag_s=0.0,
        exit_code=0, outcome=outcome,
    )  # fmt: skip


def request(run_id: str, at: float, op: str, status: int | None, ms: float) -> RequestRecord:
    return RequestRecord(ts=at, op=op, method="GET", path="/x", status=status, total_ms=ms,
                         run_id=run_id)  # fmt: skip


def test_both_sides_are_set_on_the_logs_clock(tmp_path: Path) -> None:
    # played at x4: the replay's second 20 is the log's second 80, its minute 1
    data = RunData(
        run_dir=tmp_path,
        meta=RunMeta(profile={"name": "replay"}, started=T0),
        requests=(
            request("r1", T0 + 0.5, "listing", 200, 10.0),
            request("r1", T0 + 0.6, "download", 200, 30.0),
            request("r2", T0 + 20.3, "listing", 503, 900.0),
            request("r2", T0 + 21.0, "listing", 200, 12.0),
            request(None, T0 + 22.0, "other", None, 1.0),  # type: ignore[arg-type]
        ),
        clients=(client("r1", T0 + 0.2), client("r2", T0 + 20.0, "failed"), client("r3", T0 + 30)),
    )
    log = [
        LogSample(0.0, "listing", 200, 8.0),
        LogSample(0.4, "download", 200, 20.0),
        LogSample(80.0, "listing", 200, None),  # a combined log without $request_time
        LogSample(81.0, "other", 200, None),  # a health check nobody replays
    ]
    c = compare_replay(log, data, speed=4.0, log_runs=3, facts={"unexplained_requests": 1})
    assert [(m.minute, m.log_requests, m.replay_requests) for m in c.minutes] == [
        (0, 2, 2), (1, 2, 2)
    ]  # fmt: skip
    assert [(m.log_errors, m.replay_errors) for m in c.minutes] == [(0, 0), (0, 1)]
    ops = {row.op: row for row in c.operations}
    assert list(ops) == ["listing", "download", "other"]  # the report's operation order
    assert ops["listing"].replay_status == {"200": 2, "503": 1}
    assert ops["listing"].log_latency_ms is not None and ops["listing"].log_latency_ms.count == 1
    assert ops["other"].replay_requests == 0  # unattributed requests are not the replay's
    assert c.onset_s is not None and c.onset_s.max == pytest.approx(0.3)
    assert c.runs_without_requests == 1 and c.replay_outcomes == {"ok": 2, "failed": 1}
    write_replay(tmp_path, c)
    saved = json.loads((tmp_path / "replay.json").read_text())
    assert saved["schema"] == 1 and saved["minutes"][1]["replay_errors"] == 1
    text = (tmp_path / "replay.md").read_text()
    assert (
        "| listing" in text and "200 2, 503 1" in text and "requests no client explains: 1" in text
    )
    assert "listing 2->3" in terminal_summary(c)

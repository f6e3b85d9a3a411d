"""The request record, its writer and reader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pipstorm.engine.rundir.records import RequestRecord as EngineRecord
from pipstorm.engine.rundir.records import load_requests, request_from_json
from pipstorm.infra.proxy.log import RECORD_KEYS, RecordWriter, RequestRecord


def record(**overrides: object) -> RequestRecord:
    fields: dict[str, object] = {
        "ts": 1700000000.5,
        "run_id": "run1",
        "op": "download",
        "method": "GET",
        "path": "/packages/a.whl",
        "status": 200,
        "bytes": 1234,
        "req_bytes": 0,
        "ttfb_ms": 1.5,
        "total_ms": 2.5,
        "error": None,
        "user_agent": "pip/26.3",
        "range": None,
        "fault": None,
    }
    fields.update(overrides)
    return RequestRecord(**fields)  # type: ignore[arg-type]


def test_json_line_has_exactly_the_keys_in_order() -> None:
    line = record().to_json_line()
    assert line.endswith("\n") and line.count("\n") == 1
    assert list(json.loads(line)) == list(RECORD_KEYS)


def test_writer_appends_and_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "requests.jsonl"
    with RecordWriter(path) as writer:
        writer.write(record())
        writer.write(record(run_id=None, status=None, error="upstream_refused", op="listing"))
    with RecordWriter(path) as writer:  # a second writer appends, never truncates
        writer.write(record(user_agent="ü" * 3))
    writer.write(record())  # after close: ignored
    with path.open("a") as torn:
        torn.write('{"ts": 1.0, "run_')
    records, skipped = load_requests(path)
    assert skipped == 1  # the torn last line
    assert [r.run_id for r in records] == ["run1", None, "run1"]
    assert records[1].error == "upstream_refused"
    assert records[2].user_agent == "üüü"


def test_the_engine_reads_back_exactly_what_the_proxy_writes() -> None:
    """One record type (infra's), written by the proxy and parsed back by the engine."""
    assert EngineRecord is RequestRecord
    assert {f.name for f in dataclasses.fields(RequestRecord)} == set(RECORD_KEYS)
    for fault in (None, "f1"):
        line = json.loads(record(fault=fault).to_json_line())
        assert request_from_json(line).to_json() == line
        assert request_from_json(line) == record(fault=fault)

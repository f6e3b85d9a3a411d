"""Records: JSON round trips, validation, the one writer and the tolerant reader."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipstorm.engine.rundir.files import write_json_atomic
from pipstorm.engine.rundir.jsonl import JsonlWriter, RecordError, read_jsonl
from pipstorm.engine.rundir.records import (
    ClientRecord,
    load_clients,
    load_requests,
    request_from_json,
)

REQUEST = {
    "ts": 1764040000.123,
    "run_id": "r00012",
    "op": "listing",
    "method": "GET",
    "path": "/simple/test-package-000/",
    "status": 200,
    "bytes": 1234,
    "req_bytes": 0,
    "ttfb_ms": 1.2,
    "total_ms": 3.4,
    "error": None,
    "user_agent": "pip/26.0.1",
    "range": None,
    "fault": None,
    "conn": 7,
    "upstream_new": False,
}

CLIENT = {
    "run_id": "r00012",
    "client": "pip",
    "project": "test-package-007",
    "version": "1.1.0",
    "tick": 3,
    "burst": False,
    "intended": 100.0,
    "started": 100.5,
    "launched": 101.0,
    "ended": 103.0,
    "lag_s": 0.5,
    "exit_code": 0,
    "outcome": "ok",
    "stderr_tail": "",
    "error": None,
    "cpu_s": 0.41,
    "max_rss_kb": 31000,
    "client_version": "25.3",
    "gated": 1764039990.5,
    "cpu_gate_s": 0.021,
}


def test_request_record_round_trips() -> None:
    rec = request_from_json(REQUEST)
    assert rec.to_json() == REQUEST
    assert rec.end == pytest.approx(1764040000.123 + 0.0034)


def test_request_records_written_before_connections_were_recorded_still_read() -> None:
    old = {k: v for k, v in REQUEST.items() if k not in {"conn", "upstream_new"}}
    rec = request_from_json(old)
    assert (rec.conn, rec.upstream_new) == (None, None)
    with pytest.raises(RecordError, match="upstream_new"):
        request_from_json({**REQUEST, "upstream_new": 1})


def test_client_record_round_trips() -> None:
    rec = ClientRecord.from_json(CLIENT)
    assert rec.to_json() == CLIENT


def test_client_records_written_before_gates_were_recorded_still_read() -> None:
    old = {k: v for k, v in CLIENT.items() if k not in {"gated", "cpu_gate_s"}}
    rec = ClientRecord.from_json(old)
    assert (rec.gated, rec.cpu_gate_s) == (None, None)


def test_unknown_keys_are_ignored_and_optional_ones_default() -> None:
    data = {k: REQUEST[k] for k in ("ts", "op", "method", "path", "status", "total_ms")}
    rec = request_from_json({**data, "a_future_key": "delay"})
    assert rec.run_id is None
    assert rec.fault is None
    assert rec.bytes == 0
    assert rec.ttfb_ms is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": True}, "field 'status' must be int"),
        ({"status": "200"}, "field 'status' must be int"),
        ({"total_ms": float("nan")}, "field 'total_ms' must be finite"),
        ({"ts": None}, "missing field 'ts'"),
    ],
)
def test_request_record_rejects_bad_fields(change: dict[str, object], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        request_from_json({**REQUEST, **change})


def test_client_record_rejects_unknown_outcome() -> None:
    with pytest.raises(RecordError, match="outcome must be one of"):
        ClientRecord.from_json({**CLIENT, "outcome": "weird"})


def test_writer_and_reader_skip_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(request_from_json(REQUEST))
        writer.write({**REQUEST, "run_id": "r00013"})
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n")  # a blank line is not a skipped line
        fh.write(json.dumps(REQUEST)[:25])  # cut short, as by a crash
    rows, skipped = read_jsonl(path)
    assert [r["run_id"] for r in rows] == ["r00012", "r00013"]
    assert skipped == 1
    records, skipped = load_requests(path)
    assert len(records) == 2
    assert skipped == 1


def test_reader_counts_wrong_shapes_and_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "clients.jsonl"
    good = json.dumps(CLIENT)
    bad_outcome = json.dumps({**CLIENT, "outcome": "nope"})
    path.write_bytes(f"{good}\n[1, 2]\n{bad_outcome}\n".encode() + b'{"run_id": "\xff\n')
    records, skipped = load_clients(path)
    assert [r.run_id for r in records] == ["r00012"]
    assert skipped == 3


def test_writer_appends_and_refuses_after_close(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n', encoding="utf-8")
    writer = JsonlWriter(path)
    writer.write({"a": 2})
    # flushed per line: visible to a reader while the writer is still open
    assert read_jsonl(path) == ([{"a": 1}, {"a": 2}], 0)
    writer.close()
    with pytest.raises(RecordError, match="closed"):
        writer.write({"a": 3})


def test_writer_shared_by_threads_never_interleaves_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    payload = "y" * 5000  # longer than one stdio buffer chunk

    def work(writer: JsonlWriter, n: int) -> None:
        for i in range(200):
            writer.write({"thread": n, "i": i, "payload": payload})

    with JsonlWriter(path) as writer:
        threads = [threading.Thread(target=work, args=(writer, n)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows, skipped = read_jsonl(path)
    assert skipped == 0
    assert len(rows) == 800
    assert {(r["thread"], r["i"]) for r in rows} == {(n, i) for n in range(4) for i in range(200)}


def test_write_json_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json_atomic(path, {"schema": 1})
    write_json_atomic(path, {"schema": 1, "ended": 2.0})
    assert json.loads(path.read_text(encoding="utf-8")) == {"schema": 1, "ended": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_atomic_writes_are_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_json_atomic(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o644

"""Live progress: the requests log read incrementally (a cut line waits for its end), one line
rewritten in place on a terminal, plain lines elsewhere, nothing with --quiet."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from pipstorm.engine.run.progress import LiveProgress, RequestTail, RunCounts

COUNTS = RunCounts(launched=5, in_flight=2, finished=3, failed=1)


def line(op: str, ms: float, status: int = 200) -> str:
    return json.dumps(
        {"ts": 1.0, "op": op, "method": "GET", "path": "/x", "status": status, "total_ms": ms}
    )


def test_the_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    tail = RequestTail(path, window_s=60)
    tail.poll()  # no file yet
    assert tail.total == 0
    cut = line("download", 50.0)
    path.write_text(line("listing", 10.0) + "\n" + line("listing", 30.0) + "\n" + cut[:20])
    tail.poll()
    assert tail.total == 2
    assert tail.p95_by_op() == {"listing": 29.0}
    with path.open("a") as fh:
        fh.write(cut[20:] + "\n" + line("download", 70.0, status=503) + "\nnot json\n")
    tail.poll()
    assert tail.total == 4
    assert tail.errors == 1
    assert tail.p95_by_op()["download"] == 69.0
    tail.poll()  # nothing new: nothing counted twice
    assert tail.total == 4


def test_a_terminal_gets_one_line_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(line("listing", 12.0) + "\n")
    tty = io.StringIO()
    emitted: list[str] = []
    live = LiveProgress(path, planned_s=300, t0_mono=time.monotonic(), emit=emitted.append, tty=tty)
    live.update(COUNTS, force=True)
    live.update(COUNTS, force=True)
    live.close()
    out = tty.getvalue()
    assert emitted == []
    assert out.count("\r") == 2 and out.count("\x1b[K") == 2 and out.endswith("\n")
    assert "/300 s] runs 5 launched, 2 in flight, 1 failed" in out
    assert "1 requests, 0 errors | p95 ms: listing 12" in out


def test_elsewhere_plain_lines_once_a_minute(tmp_path: Path) -> None:
    emitted: list[str] = []
    live = LiveProgress(
        tmp_path / "requests.jsonl", planned_s=60, t0_mono=time.monotonic(), emit=emitted.append
    )
    assert live.every_s == 60.0
    live.update(COUNTS)  # not due yet
    assert emitted == []
    live.update(COUNTS, force=True)
    assert len(emitted) == 1
    assert emitted[0].endswith("0 requests, 0 errors | p95 ms: -")
    live.close()  # nothing to end


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    emitted: list[str] = []
    tty = io.StringIO()
    live = LiveProgress(
        tmp_path / "r.jsonl", planned_s=60, t0_mono=0.0, emit=emitted.append, tty=tty, quiet=True
    )
    live.update(COUNTS, force=True)
    live.close()
    assert emitted == [] and tty.getvalue() == ""

"""``events.jsonl``: what happened to a run, appended the moment it is seen.

``run.json`` is rewritten whole at the run's start and end; a fact learnt in between (the
embedded target died) would be lost with a SIGKILLed pipstorm if it waited for the end. So such
a fact is appended here at once, one JSON object a line (``ts``: epoch seconds, ``event``: its
name, and its own fields), and ``RunData.load`` reads it back with the other streams: a folder
left by a killed run still says what killed its target, and ``pipstorm report DIR`` names it.
The stream is optional: a run where nothing happened has none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipstorm.engine.rundir.files import EVENTS_FILE
from pipstorm.engine.rundir.jsonl import JsonlWriter, read_jsonl

#: The embedded target's server exited during the run (``exit_code``: negative for a signal).
TARGET_DIED = "target_died"


def append_event(run_dir: Path, event: str, *, ts: float | None = None, **fields: object) -> None:
    """Append one event line to ``run_dir/events.jsonl`` now (flushed before returning)."""
    with JsonlWriter(run_dir / EVENTS_FILE) as writer:
        writer.write({"ts": time.time() if ts is None else ts, "event": event, **fields})


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """The events in the order written; malformed lines and lines without a name skipped."""
    return load_events(run_dir / EVENTS_FILE)[0]


def load_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The events of one stream and how many lines were skipped; none for a missing file."""
    if not path.is_file():
        return [], 0
    rows, skipped = read_jsonl(path)
    good = [r for r in rows if isinstance(r.get("event"), str) and _is_number(r.get("ts"))]
    return good, skipped + len(rows) - len(good)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

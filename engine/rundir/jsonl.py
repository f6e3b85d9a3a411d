"""Append-only JSONL streams: the writer every engine stream uses, and the tolerant reader.

The streams are the source of truth: they are appended while the run goes, so a crash or
Ctrl-C can leave the last line cut short. The reader therefore skips malformed lines and counts
them instead of failing, and the writer flushes every line so that a crash loses at most the
line being written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from pipstorm.engine.errors import UsageError


class RecordError(UsageError, ValueError):
    """A record, a line or a results folder does not have the shape this version expects."""


class SupportsToJson(Protocol):
    """Anything :class:`JsonlWriter` can write besides a plain mapping."""

    def to_json(self) -> dict[str, Any]: ...


class JsonlWriter:
    """Appends one JSON object per line to a file, flushing each line.

    The file is opened once in append mode; every record is serialised first and written with
    a single ``write`` call under a lock, so threads sharing a writer never interleave lines and
    a crash loses at most the line in flight (which readers then skip).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def write(self, record: SupportsToJson | Mapping[str, Any]) -> None:
        """Write one record (anything with ``to_json()``, or a mapping) as one line."""
        data = dict(record) if isinstance(record, Mapping) else record.to_json()
        line = json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            if self._file is None:
                raise RecordError(f"{self.path} is closed")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        """Close the file; further writes raise :class:`RecordError`."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read a JSONL stream: the objects, and how many non-blank lines were skipped.

    A line is skipped when it is not valid UTF-8 JSON or not an object; that is how a final
    line cut short by a crash looks. Blank lines are ignored without being counted.
    """
    rows: list[dict[str, Any]] = []
    skipped = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError both
                skipped += 1
                continue
            if isinstance(value, dict):
                rows.append(value)
            else:
                skipped += 1
    return rows, skipped


class JsonlTail:
    """Reads the complete lines appended to a JSONL stream since the last :meth:`poll`.

    For readers that follow a run while it goes (``--abort-on-fail``, the live dashboard): the
    file is read from where the last poll stopped, so a run of hours is never re-read; a line
    cut short waits for its end; a malformed line is skipped like :func:`read_jsonl` does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """The objects of the lines completed since the last poll (none if no file yet)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # b"" after a complete last line
        out: list[dict[str, Any]] = []
        for raw in lines:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

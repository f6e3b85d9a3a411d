"""One JSON line per proxied request: the record and its writer.

The reader is the engine's (``pipstorm.engine.rundir.records.load_requests``): the proxy only
writes.

The writer appends each line with a single ``write(2)`` on an ``O_APPEND`` descriptor opened
once: no buffer to flush, so a crash of the proxy loses at most the line being written, and a
run interrupted at any point can still be reported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypedDict

RECORD_KEYS: Final = (
    "ts",
    "run_id",
    "op",
    "method",
    "path",
    "status",
    "bytes",
    "req_bytes",
    "ttfb_ms",
    "total_ms",
    "error",
    "user_agent",
    "range",
    "fault",
    "conn",
    "upstream_new",
)
USER_AGENT_MAX: Final = 200
# One encoder for every line: ``json.dumps`` with non-default options builds a new
# ``JSONEncoder`` per call, on every request the proxy records.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class RecordFields(TypedDict):
    """A :class:`RequestRecord`'s fields as its JSON line holds them, in ``RECORD_KEYS``
    order: what the proxy writes per request without making the record object (its frozen
    ``__init__`` cost a call per field, once per proxied request)."""

    ts: float
    run_id: str | None
    op: str
    method: str
    path: str
    status: int | None
    bytes: int
    req_bytes: int
    ttfb_ms: float | None
    total_ms: float
    error: str | None
    user_agent: str | None
    range: str | None
    fault: str | None
    conn: int | None
    upstream_new: bool | None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP exchange as the proxy saw it; field names are the JSON keys.

    The one definition: the proxy writes it, the engine reads it back
    (``pipstorm.engine.rundir.records.load_requests``).

    ``status`` is None when no upstream response came (then ``error`` says why); ``error`` is
    also set when a response was cut short (``client_disconnected``, ``upstream_reset``).
    ``path`` is the path and query as forwarded upstream, relative to the index's origin; for
    another origin (a file host a listing linked) the absolute URL without its query (a signed
    URL's query is a credential); for an unattributed request as received. ``bytes`` counts
    body bytes delivered to the client.
    ``run_id`` is None when the request could not be attributed to a client run. ``fault`` is
    the id of the injected fault rule that shaped this exchange (``pipstorm.infra.faults.spec``),
    None for an exchange left alone.
    ``conn`` numbers the client connection that carried the request (1, 2, ... in the order the
    proxy accepted them, in this proxy's life): requests sharing it came over one keep-alive
    connection. ``upstream_new`` is True when the proxy opened a new connection to the upstream
    for this request, False when it reused a pooled one, None when nothing was sent upstream
    (refused, unroutable, or the connection could not be made). Both None in records written
    before they existed.
    """

    ts: float
    op: str
    method: str
    path: str
    status: int | None
    total_ms: float
    run_id: str | None = None
    bytes: int = 0
    req_bytes: int = 0
    ttfb_ms: float | None = None
    error: str | None = None
    user_agent: str | None = None
    range: str | None = None
    fault: str | None = None
    conn: int | None = None
    upstream_new: bool | None = None

    @property
    def end(self) -> float:
        """Wall time (epoch s) at which the exchange finished."""
        return self.ts + self.total_ms / 1000.0

    def to_json(self) -> dict[str, object]:
        """The record as a JSON-ready dict, keys in ``RECORD_KEYS`` order (spelled out: a
        ``getattr`` per key cost as much as the encoding, once per proxied request)."""
        return {
            "ts": self.ts,
            "run_id": self.run_id,
            "op": self.op,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "bytes": self.bytes,
            "req_bytes": self.req_bytes,
            "ttfb_ms": self.ttfb_ms,
            "total_ms": self.total_ms,
            "error": self.error,
            "user_agent": self.user_agent,
            "range": self.range,
            "fault": self.fault,
            "conn": self.conn,
            "upstream_new": self.upstream_new,
        }

    def to_json_line(self) -> str:
        """The record as one JSON line, keys in ``RECORD_KEYS`` order, newline-terminated."""
        return _ENCODER.encode(self.to_json()) + "\n"


class RecordWriter:
    """Appends records to a JSONL file; one ``write(2)`` per record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: RequestRecord) -> None:
        """Append one line; a no-op after ``close()`` (a request finishing during shutdown)."""
        if self._fd is not None:
            os.write(self._fd, record.to_json_line().encode())

    def write_fields(self, fields: RecordFields) -> None:
        """Append the line of a record given by its fields (as ``write``)."""
        if self._fd is not None:
            os.write(self._fd, (_ENCODER.encode(fields) + "\n").encode())

    def close(self) -> None:
        """Close the file; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

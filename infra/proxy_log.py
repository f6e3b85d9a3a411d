"""One JSON line per proxied request: the record and its writer.

The reader is the engine's (``engine.rundir.records.load_requests``): the proxy only writes. The
engine's ``RequestRecord`` parses exactly these keys (a test holds the two to one shape).

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
from typing import Final, Self

from infra.operations import Operation

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
)
USER_AGENT_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP exchange as the proxy saw it; field names are the JSON keys.

    ``status`` is None when no upstream response came (then ``error`` says why); ``error`` is
    also set when a response was cut short (``client_disconnected``, ``upstream_reset``).
    ``path`` is the path and query as forwarded upstream, relative to the upstream origin (for
    an unattributed request: as received). ``bytes`` counts body bytes delivered to the client.
    ``fault`` is the id of the injected fault rule that shaped this exchange (``infra.faults``),
    None for an exchange left alone.
    """

    ts: float
    run_id: str | None
    op: Operation
    method: str
    path: str
    status: int | None
    bytes: int
    req_bytes: int
    ttfb_ms: float
    total_ms: float
    error: str | None
    user_agent: str | None
    range: str | None
    fault: str | None = None

    def to_json_line(self) -> str:
        """The record as one JSON line, keys in ``RECORD_KEYS`` order, newline-terminated."""
        return (
            json.dumps(
                {
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
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            + "\n"
        )


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

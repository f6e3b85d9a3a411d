"""The records a run writes and the one way to write and read them.

A run directory holds append-only JSONL streams (``requests.jsonl``, ``clients.jsonl``) and a
``run.json``. The streams are the source of truth: they are appended while the run goes, so a
crash or Ctrl-C can leave the last line cut short. Readers therefore skip malformed lines and
count them instead of failing, and writers flush every line so that a crash loses at most the
line being written.

The JSON field names are the attribute names, one to one, so ``to_json``/``from_json`` are plain
and a line can be read by ``jq`` with the same words the code uses.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from clients.task import ClientResult
from infra import operations as infra_operations

REQUESTS_FILE = "requests.jsonl"
CLIENTS_FILE = "clients.jsonl"
RUN_FILE = "run.json"
#: Permissions of the files written atomically (run.json, reports): like any file a tool writes.
REPORT_MODE = 0o644

# Operations in the order reports list them: the proxy's classification is the one definition.
OPERATIONS: tuple[str, ...] = tuple(infra_operations.OPERATIONS)
OUTCOMES: tuple[str, ...] = ("ok", "failed", "timeout", "interrupted", "error", "conflict")
# The proxy's `error` value when the client went away: not a server failure, reported apart.
CLIENT_DISCONNECTED = "client_disconnected"


class RecordError(ValueError):
    """A record (or line) does not have the shape this version expects."""


class SupportsToJson(Protocol):
    """Anything :class:`JsonlWriter` can write besides a plain mapping."""

    def to_json(self) -> dict[str, Any]: ...


def _field(data: Mapping[str, Any], key: str, kinds: tuple[type, ...], *, optional: bool) -> Any:  # noqa: ANN401 - checked at run time against `kinds`
    """Fetch one field, checking its JSON type; the message names the field and the problem."""
    if key not in data or data[key] is None:
        if optional:
            return None
        raise RecordError(f"missing field {key!r}")
    value = data[key]
    # bool is an int subclass: `true` must not pass for a status code or a byte count.
    if isinstance(value, bool) and bool not in kinds:
        raise RecordError(f"field {key!r} must be {_kind_names(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise RecordError(f"field {key!r} must be {_kind_names(kinds)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        # json.loads accepts NaN/Infinity; one NaN would poison every percentile.
        raise RecordError(f"field {key!r} must be finite, got {value!r}")
    return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


_NUM = (int, float)


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP exchange seen by the recording proxy (one line of ``requests.jsonl``).

    ``status`` is None when no upstream response arrived (a transport error, named in
    ``error``). ``run_id`` is None when the proxy could not attribute the request to a run.
    ``fault`` is the id of the injected fault rule that shaped the exchange (None: genuine).
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

    def to_json(self) -> dict[str, Any]:
        """The line's content as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRecord:
        """Parse one line's dict; unknown keys are ignored so newer writers stay readable."""
        return cls(
            ts=float(_field(data, "ts", _NUM, optional=False)),
            op=_field(data, "op", (str,), optional=False),
            method=_field(data, "method", (str,), optional=False),
            path=_field(data, "path", (str,), optional=False),
            status=_field(data, "status", (int,), optional=True),
            total_ms=float(_field(data, "total_ms", _NUM, optional=False)),
            run_id=_field(data, "run_id", (str,), optional=True),
            bytes=_field(data, "bytes", (int,), optional=True) or 0,
            req_bytes=_field(data, "req_bytes", (int,), optional=True) or 0,
            ttfb_ms=_opt_float(_field(data, "ttfb_ms", _NUM, optional=True)),
            error=_field(data, "error", (str,), optional=True),
            user_agent=_field(data, "user_agent", (str,), optional=True),
            range=_field(data, "range", (str,), optional=True),
            fault=_field(data, "fault", (str,), optional=True),
        )

    @property
    def end(self) -> float:
        """Wall time (epoch s) at which the exchange finished."""
        return self.ts + self.total_ms / 1000.0


@dataclass(frozen=True)
class ClientRecord:
    """One client run (one line of ``clients.jsonl``), the same shape for every client kind.

    Times are wall epoch seconds: ``intended`` is when the schedule wanted the run, ``started``
    when the pool began it (venv creation included), ``launched`` when the client process
    itself started (None if it never did), ``ended`` when it was over.
    """

    run_id: str
    client: str
    project: str
    version: str | None
    tick: int
    burst: bool
    intended: float
    started: float
    launched: float | None
    ended: float
    lag_s: float
    exit_code: int | None
    outcome: str
    stderr_tail: str = ""
    error: str | None = None
    cpu_s: float | None = None  # user + system CPU of the client process tree
    max_rss_kb: int | None = None
    client_version: str | None = None  # the version of the client that ran (pip 25.3...)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise RecordError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")

    @classmethod
    def from_result(
        cls,
        result: ClientResult,
        *,
        project: str,
        version: str | None,
        intended: float,
        tick: int = 0,
        burst: bool = False,
    ) -> ClientRecord:
        """The record of a client run as a worker reported it, placed in the schedule.

        Lag is measured to the client's launch (its venv is made ahead of time, so the start
        of preparation says nothing about load arriving late)."""
        began = result.launched if result.launched is not None else result.started
        return cls(
            run_id=result.run_id,
            client=result.client,
            project=project,
            version=version,
            tick=tick,
            burst=burst,
            intended=intended,
            started=result.started,
            launched=result.launched,
            ended=result.ended,
            lag_s=began - intended,
            exit_code=result.exit_code,
            outcome=result.outcome,
            stderr_tail=result.stderr_tail,
            error=result.error,
            cpu_s=round(result.cpu_s, 4),
            max_rss_kb=result.max_rss_kb,
            client_version=result.client_version,
        )

    def to_json(self) -> dict[str, Any]:
        """The line's content as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientRecord:
        """Parse one line's dict; unknown keys are ignored so newer writers stay readable."""
        return cls(
            run_id=_field(data, "run_id", (str,), optional=False),
            client=_field(data, "client", (str,), optional=False),
            project=_field(data, "project", (str,), optional=False),
            version=_field(data, "version", (str,), optional=True),
            tick=_field(data, "tick", (int,), optional=True) or 0,
            burst=bool(_field(data, "burst", (bool,), optional=True)),
            intended=float(_field(data, "intended", _NUM, optional=False)),
            started=float(_field(data, "started", _NUM, optional=False)),
            launched=_opt_float(_field(data, "launched", _NUM, optional=True)),
            ended=float(_field(data, "ended", _NUM, optional=False)),
            lag_s=float(_field(data, "lag_s", _NUM, optional=False)),
            exit_code=_field(data, "exit_code", (int,), optional=True),
            outcome=_field(data, "outcome", (str,), optional=False),
            stderr_tail=_field(data, "stderr_tail", (str,), optional=True) or "",
            error=_field(data, "error", (str,), optional=True),
            cpu_s=_opt_float(_field(data, "cpu_s", _NUM, optional=True)),
            max_rss_kb=_field(data, "max_rss_kb", (int,), optional=True),
            client_version=_field(data, "client_version", (str,), optional=True),
        )


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


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


def load_requests(path: Path) -> tuple[list[RequestRecord], int]:
    """``requests.jsonl`` as records, plus skipped lines (malformed JSON or wrong shape)."""
    rows, skipped = read_jsonl(path)
    records: list[RequestRecord] = []
    for row in rows:
        try:
            records.append(RequestRecord.from_json(row))
        except RecordError:
            skipped += 1
    return records, skipped


def load_clients(path: Path) -> tuple[list[ClientRecord], int]:
    """``clients.jsonl`` as records, plus skipped lines (malformed JSON or wrong shape)."""
    rows, skipped = read_jsonl(path)
    records: list[ClientRecord] = []
    for row in rows:
        try:
            records.append(ClientRecord.from_json(row))
        except RecordError:
            skipped += 1
    return records, skipped


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new, never half.

    The temp file lives in the same folder (``os.replace`` is atomic only within a file
    system) and is removed if anything fails before the rename.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file private (0600); a report is meant to be read by others too.
        os.fchmod(fd, REPORT_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)  # os.replace: atomic within one file system
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON document atomically (``run.json``, ``report.json``), indented for people."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")

"""The records of a results folder's streams: one client run, one request, and their readers.

The JSON field names are the attribute names, one to one, so ``to_json``/``from_json`` are plain
and a line can be read by ``jq`` with the same words the code uses. A request's record is the
proxy's own type (``pipstorm.infra.proxy.log.RequestRecord``: one definition for writer and reader);
parsing it back, with every field's JSON type checked, is done here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from pipstorm.clients.task import ClientResult, RunOutcome
from pipstorm.engine.rundir.jsonl import RecordError, read_jsonl
from pipstorm.infra import operations as infra_operations
from pipstorm.infra.proxy.log import RequestRecord

__all__ = [
    "CLIENT_DISCONNECTED",
    "OPERATIONS",
    "OUTCOMES",
    "ClientRecord",
    "RequestRecord",
    "load_clients",
    "load_requests",
    "op_order",
    "request_from_json",
]

# Operations in the order reports list them: the proxy's classification is the one definition.
OPERATIONS: tuple[str, ...] = tuple(infra_operations.OPERATIONS)
OUTCOMES: tuple[str, ...] = get_args(RunOutcome)
# The proxy's `error` value when the client went away: not a server failure, reported apart.
CLIENT_DISCONNECTED = "client_disconnected"


def op_order(op: str) -> tuple[int, str]:
    """Sort key of an operation: the report's order, unknown ones last by name."""
    return (OPERATIONS.index(op) if op in OPERATIONS else len(OPERATIONS), op)


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


def request_from_json(data: Mapping[str, Any]) -> RequestRecord:
    """Parse one ``requests.jsonl`` line's dict; unknown keys are ignored so newer writers stay
    readable; RecordError names a field of the wrong type."""
    return RequestRecord(
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
        conn=_field(data, "conn", (int,), optional=True),
        upstream_new=_field(data, "upstream_new", (bool,), optional=True),
    )


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
    # A warm run's gate: when its preparation was done (epoch s; after ``intended``, it was
    # prepared late and its release waited for it) and the client's CPU until then.
    gated: float | None = None
    cpu_gate_s: float | None = None

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
            gated=result.gated,
            cpu_gate_s=None if result.cpu_gate_s is None else round(result.cpu_gate_s, 4),
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
            gated=_opt_float(_field(data, "gated", _NUM, optional=True)),
            cpu_gate_s=_opt_float(_field(data, "cpu_gate_s", _NUM, optional=True)),
        )


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def load_requests(path: Path) -> tuple[list[RequestRecord], int]:
    """``requests.jsonl`` as records, plus skipped lines (malformed JSON or wrong shape)."""
    rows, skipped = read_jsonl(path)
    records: list[RequestRecord] = []
    for row in rows:
        try:
            records.append(request_from_json(row))
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

"""What a client run is asked to do and what it reports back: the records crossing the pool."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Outcome = Literal["ok", "failed", "timeout", "interrupted", "error"]


@dataclass(frozen=True)
class ClientTask:
    """One client run: which client, which release, through which index URL (the proxy's)."""

    run_id: str
    client: str
    project: str
    version: str
    index_url: str
    timeout_s: float = 120.0


@dataclass(frozen=True)
class ClientResult:
    """What one client run did. Times are wall-clock epoch seconds.

    ``started`` is when the run began its own work (making its venv), ``launched`` when the client
    process was spawned; the difference is the generator's set-up cost, not the index's latency.
    """

    run_id: str
    client: str
    started: float
    launched: float | None
    ended: float
    exit_code: int | None
    outcome: Outcome
    stderr_tail: str
    error: str | None
    cpu_s: float
    max_rss_kb: int
    client_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

"""What a client run is asked to do and what it reports back: the records crossing the pool."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

#: ``conflict``: an upload the index refused because the file exists (pypiserver's 409).
RunOutcome = Literal["ok", "failed", "timeout", "interrupted", "error", "conflict"]


@dataclass(frozen=True)
class ClientTask:
    """One client run: which client, which release, through which index URL (the proxy's).

    ``requirements`` are further pinned releases a resolving client (poetry, uv) asks for with
    the first one; ``resolve_deps`` lets pip follow dependencies (a corpus that has them);
    ``client_version`` pins the client (None: the driver's default); ``extra_args`` are
    appended to the client's command line as given (``pipstorm retry-lab --client-arg``).
    """

    run_id: str
    client: str
    project: str
    version: str
    index_url: str
    timeout_s: float = 120.0
    requirements: tuple[tuple[str, str], ...] = ()
    resolve_deps: bool = False
    client_version: str | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def pins(self) -> list[tuple[str, str]]:
        """Every release the run asks for: the first one, then ``requirements``."""
        return [(self.project, self.version), *self.requirements]


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
    outcome: RunOutcome
    stderr_tail: str
    error: str | None
    cpu_s: float
    max_rss_kb: int
    client_version: str | None = None
    gated: float | None = None  # a warm run's gate (``Outcome.gated``)
    cpu_gate_s: float | None = None  # its CPU until then

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

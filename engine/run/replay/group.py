"""Logged requests become client runs: which client made them, and which belong together.

The rules (docs/replay.md says them to users; tests/engine/run/replay checks them one by one,
tests/e2e/test_replay.py on lines written from real pip, poetry, uv and twine runs through the
proxy):

1. The client kind and version come from the user agent: ``pip/25.3 {...}`` is pip 25.3,
   ``poetry/2.1.3 ...`` poetry 2.1.3, ``uv/0.5.0 ...`` uv, ``twine/6.0.1 ...`` twine,
   ``pipstorm-http/...`` the synthetic client. Anything else (a browser, a health check,
   ``curl``) is *unexplained*: counted and listed, replayed as the synthetic ``http`` client
   only with ``--raw``.
2. Requests are keyed by client address and user agent (one CI host running one client
   version), in arrival order (combined format: in the order the lines were written, since its
   times have whole seconds). A key's next request starts a new run when it comes more than
   ``gap_s`` (default 10 s) after the key's previous one, or when it asks again for a project's
   listing the current run already had answered: a client process reads a listing once, so
   that is the next process. A repeat after a failure (no answer, 429, 5xx) is a retry and
   stays in the run. Files are not a boundary: uv asks HEAD then GET of one wheel, poetry
   and uv read a wheel's tail in several range requests.
3. An upload (POST/PUT) is a run of its own: a twine run uploads one file.
4. What a run asks for: the releases whose files it fetched (``name-version`` from the wheel or
   sdist name); a listed project whose file it never fetched (a resolver that read only the
   listing, a 404) at the newest version the whole log shows of it. A run that names no
   release the log knows a version of is not replayable (counted with its reason).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipstorm.engine.run.replay.logline import LoggedRequest
from pipstorm.engine.run.replay.paths import target_of
from pipstorm.packages.spec import version_key

#: Seconds of silence from one key after which its next request is another run.
DEFAULT_GAP_S = 10.0
#: The synthetic client's kind: what ``--raw`` replays unexplained requests as.
RAW_KIND = "http"
_AGENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pip", re.compile(r"^pip/(\S+)")),
    ("poetry", re.compile(r"^poetry/(\S+)")),
    ("uv", re.compile(r"^uv/(\S+)")),
    ("twine", re.compile(r"^twine/(\S+)")),
    (RAW_KIND, re.compile(r"^pipstorm-http/(\S+)")),
)
_RETRIED = frozenset({429})


def client_of(user_agent: str) -> tuple[str | None, str | None]:
    """``(kind, version)`` the user agent names; ``(None, None)`` when no client explains it."""
    for kind, pattern in _AGENTS:
        match = pattern.match(user_agent)
        if match is not None:
            return kind, match.group(1)
    return None, None


@dataclass
class LoggedRun:
    """Consecutive requests of one client that one process made."""

    kind: str | None  # None: unexplained
    version: str | None
    client: str
    user_agent: str
    requests: list[LoggedRequest] = field(default_factory=list)
    pins: list[tuple[str, str]] = field(default_factory=list)  # filled by ``resolve_pins``

    @property
    def start(self) -> float:
        """The arrival of its first request: the run's instant."""
        return min(request.time for request in self.requests)

    def listed(self) -> list[str]:
        """Projects whose listing it asked for, in order, once each."""
        seen: dict[str, None] = {}
        for request in self.requests:
            target = target_of(request.method, request.path)
            if target.asked == "listing" and target.project is not None:
                seen.setdefault(target.project)
        return list(seen)

    def fetched(self) -> list[tuple[str, str]]:
        """Releases whose files (or metadata) it asked for, in order, once each."""
        seen: dict[tuple[str, str], None] = {}
        for request in self.requests:
            target = target_of(request.method, request.path)
            if target.asked == "file" and target.project and target.version:
                seen.setdefault((target.project, target.version))
        return list(seen)


def group_runs(
    requests: Iterable[LoggedRequest], *, gap_s: float = DEFAULT_GAP_S
) -> list[LoggedRun]:
    """Every run the requests make up, by the rules above, in order of their first request."""
    by_key: dict[tuple[str, str], list[LoggedRequest]] = {}
    for request in sorted(requests, key=lambda r: r.order):
        by_key.setdefault((request.client, request.user_agent), []).append(request)
    runs: list[LoggedRun] = []
    for (client, agent), logged in by_key.items():
        kind, version = client_of(agent)
        current: LoggedRun | None = None
        answered: set[str] = set()
        last = 0.0
        for request in logged:
            target = target_of(request.method, request.path)
            listing = target.project if target.asked == "listing" else None
            if (
                current is None
                or target.asked == "upload"
                or request.time - last > gap_s
                or listing in answered
            ):
                current = LoggedRun(kind, version, client, agent)
                runs.append(current)
                answered = set()
            current.requests.append(request)
            last = request.time
            if listing is not None and _answered(request):
                answered.add(listing)
    runs.sort(key=lambda run: run.start)
    return runs


def _answered(request: LoggedRequest) -> bool:
    """A request the client will not repeat in the same process (else it is retried)."""
    status = request.status
    return status is not None and status < 500 and status not in _RETRIED


def newest_versions(runs: Iterable[LoggedRun]) -> dict[str, str]:
    """The newest version of each project any run fetched a file of."""
    newest: dict[str, str] = {}
    for run in runs:
        for project, version in run.fetched():
            if project not in newest or version_key(version) > version_key(newest[project]):
                newest[project] = version
    return newest


def resolve_pins(runs: list[LoggedRun], *, default_project: tuple[str, str] | None) -> Counter[str]:
    """Fill each run's ``pins`` (rule 4); returns why runs could not be (reason -> count).

    An upload run pins ``default_project``: an upload's body (the project) is not logged."""
    newest = newest_versions(runs)
    unreplayable: Counter[str] = Counter()
    for run in runs:
        fetched = run.fetched()
        have = {project for project, _ in fetched}
        guessed = [(p, newest[p]) for p in run.listed() if p not in have and p in newest]
        run.pins = [*fetched, *guessed]
        if run.pins:
            continue
        uploads = any(target_of(r.method, r.path).asked == "upload" for r in run.requests)
        if uploads and default_project is not None:
            run.pins = [default_project]
            continue
        unreplayable["name no release the log shows a version of"] += 1
    return unreplayable

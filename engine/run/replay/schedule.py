"""A grouped log becomes a schedule: one planned run per logged run, at its log instant.

Offset 0 is the log's first replayed request (after ``--from``); each run starts at its first
request's offset divided by ``--speed``. The schedule is open, as in ``pipstorm run``: fixed
before anything starts, no run waits for another. The corpus is the releases the runs ask for
(``CorpusSpec.listed``), so the embedded target serves exactly the names the log shows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipstorm.clients.drivers.tools import check_version
from pipstorm.clients.errors import ToolError
from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.plan.schedule import PlannedRun
from pipstorm.engine.run.replay.group import (
    DEFAULT_GAP_S,
    RAW_KIND,
    LoggedRun,
    group_runs,
    resolve_pins,
)
from pipstorm.engine.run.replay.logline import LoggedRequest
from pipstorm.engine.run.replay.paths import target_of
from pipstorm.packages.spec import CorpusSpec

#: The log's clock is cut in minutes for the schedule's ticks and the comparison.
MINUTE_S = 60.0


class NothingToReplay(UsageError):
    """The log holds no request a client run can replay; one line saying what it did hold."""


@dataclass(frozen=True)
class ReplayPlan:
    """The runs to play and what the log held that they do not replay."""

    runs: list[PlannedRun]
    corpus: CorpusSpec
    origin: float  # the log time of offset 0
    speed: float
    span_s: float  # log seconds from the origin to the last request
    requests: int
    by_kind: dict[str, int]
    versions: dict[str, str]  # the most frequent version of each kind (run.json's choice)
    unexplained: Counter[str] = field(default_factory=Counter)  # user agent -> requests
    unreplayable: Counter[str] = field(default_factory=Counter)  # reason -> runs
    odd_versions: Counter[str] = field(default_factory=Counter)  # "pip 25.3-custom" -> runs
    #: The file names the log shows of each project: what a remote index's listing must show.
    files: dict[str, set[str]] = field(default_factory=dict)

    def files_of(self, project: str) -> set[str]:
        """The logged files of ``project`` (a remote index's preflight checks its listing)."""
        return self.files.get(project, set())

    @property
    def duration_s(self) -> float:
        """The replay's length (log span / speed), at least one second."""
        return max(1.0, self.span_s / self.speed)


def plan_replay(
    requests: Sequence[LoggedRequest],
    *,
    speed: float = 1.0,
    gap_s: float = DEFAULT_GAP_S,
    raw: bool = False,
) -> ReplayPlan:
    """The schedule of ``requests``; NothingToReplay when no run is left to play."""
    if not speed > 0 or not math.isfinite(speed):
        raise UsageError(f"--speed must be > 0, got {speed}")
    if not requests:
        raise NothingToReplay("the log holds no request in the chosen window: nothing to replay")
    runs = group_runs(requests, gap_s=gap_s)
    unexplained: Counter[str] = Counter()
    playable: list[LoggedRun] = []
    for run in runs:
        if run.kind is None:
            unexplained[run.user_agent or "-"] += len(run.requests)
            if not raw:
                continue
            run.kind, run.version = RAW_KIND, None
        playable.append(run)
    unreplayable = resolve_pins(playable, default_project=_first_release(playable))
    playable = [run for run in playable if run.pins]
    if not playable:
        raise NothingToReplay(_nothing_said(len(requests), unexplained, unreplayable, raw=raw))
    origin = min(r.time for r in requests)
    odd: Counter[str] = Counter()
    planned = [_planned(i, run, origin, speed, odd) for i, run in enumerate(playable)]
    releases = sorted({pin for run in playable for pin in run.pins})
    versions = _usual_versions(planned)
    return ReplayPlan(
        runs=planned,
        corpus=CorpusSpec(listed=tuple(releases)),
        origin=origin,
        speed=speed,
        span_s=max(r.time for r in requests) - origin,
        requests=len(requests),
        by_kind=dict(Counter(run.client for run in planned)),
        versions=versions,
        unexplained=unexplained,
        unreplayable=unreplayable,
        odd_versions=odd,
        files=_logged_files(playable),
    )


def _planned(
    index: int, run: LoggedRun, origin: float, speed: float, odd: Counter[str]
) -> PlannedRun:
    offset_log = run.start - origin
    (project, version), *more = run.pins
    return PlannedRun(
        run_id=f"r{index:05d}",
        offset_s=offset_log / speed,
        tick=int(offset_log // MINUTE_S),
        burst=False,
        client=run.kind or RAW_KIND,  # unexplained runs became RAW_KIND or were dropped
        project=project,
        version=version,
        requirements=tuple(more),
        client_version=_version(run, odd),
    )


def _version(run: LoggedRun, odd: Counter[str]) -> str | None:
    """The client version the user agent names, if a tool of it can be installed; else None
    (the driver's default), counted so the run can say it."""
    if run.kind == RAW_KIND or run.kind is None or run.version is None:
        return None
    try:
        return check_version(run.kind, run.version)
    except ToolError:
        odd[f"{run.kind} {run.version}"] += 1
        return None


def _usual_versions(planned: list[PlannedRun]) -> dict[str, str]:
    counts: Counter[tuple[str, str]] = Counter(
        (run.client, run.client_version) for run in planned if run.client_version is not None
    )
    usual: dict[str, str] = {}
    for (kind, version), _ in counts.most_common():
        usual.setdefault(kind, version)
    return usual


def _logged_files(runs: list[LoggedRun]) -> dict[str, set[str]]:
    files: dict[str, set[str]] = {}
    for run in runs:
        for request in run.requests:
            target = target_of(request.method, request.path)
            if target.asked == "file" and target.project is not None:
                name = request.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".metadata")
                files.setdefault(target.project, set()).add(name)
    return files


def _first_release(runs: list[LoggedRun]) -> tuple[str, str] | None:
    """What an upload run publishes a new release of: the first release the log names."""
    for run in runs:
        fetched = run.fetched()
        if fetched:
            return fetched[0]
    return None


def _nothing_said(
    requests: int, unexplained: Counter[str], unreplayable: Counter[str], *, raw: bool
) -> str:
    parts = [f"none of the log's {requests} requests makes a replayable client run"]
    if unexplained and not raw:
        agent, count = unexplained.most_common(1)[0]
        parts.append(
            f"{sum(unexplained.values())} come from clients pipstorm does not drive "
            f"(most: {agent[:60]!r}, {count}; --raw replays them as the http client)"
        )
    for reason, count in unreplayable.items():
        parts.append(f"{count} runs {reason}")
    return "; ".join(parts)

"""A whole results folder, read once: ``RunData.load(dir)``.

Reports, charts, traces and comparisons all start from the same :class:`RunData`, so each
stream is parsed once per command, and every reader agrees on what a skipped line, a missing
file or an unreadable one means: a missing stream reads as empty (and is named), a malformed line
is skipped and counted, and only a folder without a readable ``run.json`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipstorm.engine.rundir.events import load_events
from pipstorm.engine.rundir.files import (
    CLIENTS_FILE,
    CLOUDWATCH_FILE,
    EVENTS_FILE,
    HOST_FILE,
    REQUESTS_FILE,
    TARGET_CGROUP_FILE,
)
from pipstorm.engine.rundir.host import HostRow, load_host, number
from pipstorm.engine.rundir.jsonl import RecordError, read_jsonl
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord, load_clients, load_requests
from pipstorm.infra.aws.cloudwatch_log import CloudWatchLogError, read_cloudwatch
from pipstorm.infra.aws.metric_data import CloudWatchData

T = TypeVar("T")


@dataclass(frozen=True)
class RunData:
    """``run.json`` and the streams of one results folder.

    ``skipped`` counts malformed lines per stream; ``missing`` names the request and client
    streams that do not exist (a run refused before load, or a folder copied in part); host
    samples are optional (older runs have none) and never reported missing; so is the
    CloudWatch side (only runs against an AWS stack have one; an unreadable file counts as one
    skipped line of ``cloudwatch.jsonl``).
    """

    run_dir: Path
    meta: RunMeta
    requests: tuple[RequestRecord, ...] = ()
    clients: tuple[ClientRecord, ...] = ()
    host: tuple[HostRow, ...] = ()
    cloudwatch: CloudWatchData | None = None
    #: The embedded target's cgroup samples (a run with ``--sizing``), in time order.
    target_cgroup: tuple[Mapping[str, Any], ...] = ()
    #: What happened as it happened (``events.jsonl``: the target's death), in written order.
    events: tuple[Mapping[str, Any], ...] = ()
    skipped: Mapping[str, int] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    @property
    def host_file_present(self) -> bool:
        """Whether the folder has a ``host.jsonl`` at all (the HTML says why a chart is absent)."""
        return (self.run_dir / HOST_FILE).is_file()

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        """Read ``run_dir``; RecordError when it is not a readable pipstorm results folder."""
        meta = RunMeta.read(run_dir)
        skipped: dict[str, int] = {}
        missing: list[str] = []
        requests = _stream(run_dir, REQUESTS_FILE, load_requests, skipped, missing)
        clients = _stream(run_dir, CLIENTS_FILE, load_clients, skipped, missing)
        host: list[HostRow] = []
        if (run_dir / HOST_FILE).is_file():
            try:
                host, skipped[HOST_FILE] = load_host(run_dir / HOST_FILE)
            except OSError:
                host = []
        cloudwatch: CloudWatchData | None = None
        try:
            cloudwatch = read_cloudwatch(run_dir / CLOUDWATCH_FILE)
        except (CloudWatchLogError, OSError):
            skipped[CLOUDWATCH_FILE] = 1
        cgroup_rows: list[Mapping[str, Any]] = []
        if (run_dir / TARGET_CGROUP_FILE).is_file():
            try:
                rows, bad = read_jsonl(run_dir / TARGET_CGROUP_FILE)
            except OSError:
                rows, bad = [], 0
            cgroup_rows = sorted(
                (r for r in rows if number(r.get("ts")) is not None), key=lambda r: float(r["ts"])
            )
            skipped[TARGET_CGROUP_FILE] = bad + len(rows) - len(cgroup_rows)
        try:
            events, bad_events = load_events(run_dir / EVENTS_FILE)
        except OSError:
            events, bad_events = [], 1
        if bad_events:  # optional, like host.jsonl: named only when something was skipped
            skipped[EVENTS_FILE] = bad_events
        return cls(
            run_dir=run_dir,
            meta=meta,
            requests=tuple(requests),
            clients=tuple(clients),
            host=tuple(host),
            cloudwatch=cloudwatch,
            target_cgroup=tuple(cgroup_rows),
            events=tuple(events),
            skipped=skipped,
            missing=tuple(missing),
        )


def _stream(
    run_dir: Path,
    name: str,
    loader: Callable[[Path], tuple[list[T], int]],
    skipped: dict[str, int],
    missing: list[str],
) -> list[T]:
    path = run_dir / name
    if not path.is_file():
        missing.append(name)
        skipped[name] = 0
        return []
    try:
        records, skipped[name] = loader(path)
    except OSError as exc:
        raise RecordError(f"{run_dir}: cannot read {name} ({exc})") from None
    return records

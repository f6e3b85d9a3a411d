"""Request timelines of client runs: what a client retried, how long it waited, why it failed.

Clients hide their retries: pip retries a 503 listing silently and, when every attempt fails,
says "No matching distribution found", which reads like a missing package. The proxy saw every
attempt, so a run's requests, grouped by URL, show the retries, the gaps between them (the
client's backoff) and whether the failure was an injected fault (``pipstorm run --fault``) or
the index's own. ``pipstorm trace`` prints these; the report uses :func:`diagnose` for the
reason of each failed run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord
from pipstorm.infra.faults.spec import FaultSpecError, parse_fault

MISSING_PACKAGE_HINT = "No matching distribution found"


@dataclass(frozen=True)
class Attempt:
    """One request of a run, with its place among the attempts of the same URL."""

    record: RequestRecord
    number: int  # 1 for the first request of this method + path by this run
    gap_s: float | None  # from the end of the previous attempt of this URL to this one's start
    fault_kind: str | None  # the injected rule's action ("503", "stall", ...), None if genuine
    # The client gave up on the previous attempt before the proxy had finished it (a stall, a
    # slow body): the proxy's end is then meaningless and ``gap_s`` is from its start.
    gap_from_start: bool = False

    @property
    def failed(self) -> bool:
        """The client did not get a complete good answer (an error status, a cut, a hang-up)."""
        rec = self.record
        return (rec.status is not None and rec.status >= 400) or rec.error is not None

    @property
    def outcome(self) -> str:
        """What the client got: the status, or the error kind when no status came."""
        rec = self.record
        error = None if rec.error is None else rec.error.split(":", 1)[0].removeprefix("injected_")
        if rec.status is None:
            return error or "no response"
        return str(rec.status) if error is None else f"{rec.status} {error}"


@dataclass(frozen=True)
class UrlAttempts:
    """Every attempt a run made at one URL (method + path)."""

    method: str
    path: str
    op: str
    attempts: tuple[Attempt, ...]

    @property
    def retries(self) -> int:
        return len(self.attempts) - 1

    @property
    def failed(self) -> bool:
        """The last attempt failed: the client gave up on this URL (or was stopped)."""
        return self.attempts[-1].failed


@dataclass(frozen=True)
class RunTrace:
    """One client run: its requests in order, grouped by URL, and what went wrong."""

    run_id: str
    client: ClientRecord | None
    attempts: tuple[Attempt, ...]  # in the order they started
    urls: tuple[UrlAttempts, ...]

    @property
    def retries(self) -> int:
        return sum(u.retries for u in self.urls)

    @property
    def recovered(self) -> bool:
        """The run succeeded although it had to retry."""
        return self.client is not None and self.client.outcome == "ok" and self.retries > 0


def fault_kinds(faults: Sequence[Mapping[str, object]]) -> dict[str, str]:
    """Rule id -> action kind, from ``run.json``'s ``faults`` list (unknown ids stay unknown)."""
    kinds: dict[str, str] = {}
    for item in faults:
        if isinstance(item, Mapping) and isinstance(item.get("spec"), str):
            rule_id = str(item.get("id", ""))
            try:
                kinds[rule_id] = parse_fault(str(item["spec"]), default_id=rule_id).kind
            except FaultSpecError:
                continue
    return kinds


def build_trace(
    run_id: str,
    requests: Sequence[RequestRecord],
    client: ClientRecord | None,
    kinds: Mapping[str, str],
) -> RunTrace:
    """The trace of ``run_id`` from its requests (any order; other runs' are ignored)."""
    mine = sorted((r for r in requests if r.run_id == run_id), key=lambda r: r.ts)
    seen: dict[tuple[str, str], list[Attempt]] = {}
    ordered: list[Attempt] = []
    for rec in mine:
        earlier = seen.setdefault((rec.method, rec.path), [])
        gap, from_start = None, False
        if earlier:
            gap = rec.ts - earlier[-1].record.end
            if gap < 0:
                gap, from_start = rec.ts - earlier[-1].record.ts, True
        attempt = Attempt(
            record=rec,
            number=len(earlier) + 1,
            gap_s=gap,
            fault_kind=None if rec.fault is None else kinds.get(rec.fault, rec.fault),
            gap_from_start=from_start,
        )
        earlier.append(attempt)
        ordered.append(attempt)
    urls = tuple(
        UrlAttempts(method=m, path=p, op=attempts[0].record.op, attempts=tuple(attempts))
        for (m, p), attempts in seen.items()
    )
    return RunTrace(run_id=run_id, client=client, attempts=tuple(ordered), urls=urls)


def diagnose(trace: RunTrace) -> str:
    """One line saying how the run ended and why, injected faults named as such."""
    client = trace.client
    if client is None:
        return "no client record (still running, or the run was interrupted)"
    if client.outcome == "ok":
        return f"ok after {trace.retries} retries" if trace.retries else "ok"
    failed = [u for u in trace.urls if u.failed]
    prefix = "timed out; " if client.outcome == "timeout" else ""
    if not failed:
        return prefix + _from_stderr(trace, client)
    url = max(failed, key=lambda u: u.attempts[-1].record.ts)
    return prefix + _url_failure(url)


def _url_failure(url: UrlAttempts) -> str:
    attempts = url.attempts
    count = len(attempts)
    what = f"{count} attempt{'s' if count != 1 else ''} at {url.op} {url.path}"
    injected = [a for a in attempts if a.failed and a.fault_kind is not None]
    genuine = [a for a in attempts if a.failed and a.fault_kind is None]
    last = attempts[-1]
    if len(injected) == count:
        cause = f"injected {_kinds(injected)}"
    elif len(genuine) == count:
        cause = f"{_outcomes(genuine)} from the index"
    else:
        cause = f"{_outcomes([last])} ({len(injected)} injected, {len(genuine)} genuine)"
    if count == 1:
        return f"failed on {cause} ({what}, no retry)"
    return f"retries exhausted on {cause} ({what})"


def _kinds(attempts: Sequence[Attempt]) -> str:
    return "/".join(dict.fromkeys(a.fault_kind or "?" for a in attempts))


def _outcomes(attempts: Sequence[Attempt]) -> str:
    return "/".join(dict.fromkeys(a.outcome for a in attempts))


def _from_stderr(trace: RunTrace, client: ClientRecord) -> str:
    lines = [ln.strip() for ln in client.stderr_tail.splitlines() if ln.strip()]
    last = client.error or (lines[-1] if lines else f"exit code {client.exit_code}")
    if MISSING_PACKAGE_HINT in client.stderr_tail:
        listings = [a for a in trace.attempts if a.record.op == "listing"]
        if listings and all(not a.failed for a in listings):
            return f"package missing: the listing answered {listings[-1].outcome}: {last}"
    return last


@dataclass(frozen=True)
class RunDirTraces:
    """Every client run of a results folder, traced."""

    data: RunData
    traces: tuple[RunTrace, ...]


def trace_runs(data: RunData) -> RunDirTraces:
    """Trace each client run of a results folder (runs seen only by the proxy too)."""
    requests, clients = data.requests, data.clients
    by_id = {c.run_id: c for c in clients}
    order = [c.run_id for c in sorted(clients, key=lambda c: (c.intended, c.run_id))]
    order += sorted({r.run_id for r in requests if r.run_id is not None} - set(by_id))
    kinds = fault_kinds(data.meta.faults)
    traces = tuple(build_trace(rid, requests, by_id.get(rid), kinds) for rid in order)
    return RunDirTraces(data=data, traces=traces)


def retry_counts(traces: Sequence[RunTrace]) -> dict[str, tuple[int, int, int]]:
    """Per operation: (requests, retries, retries that followed an injected fault)."""
    counts: dict[str, list[int]] = {}
    for trace in traces:
        for url in trace.urls:
            row = counts.setdefault(url.op, [0, 0, 0])
            row[0] += len(url.attempts)
            row[1] += url.retries
            row[2] += sum(1 for a in url.attempts[:-1] if a.fault_kind is not None)
    return {op: (n, r, i) for op, (n, r, i) in sorted(counts.items())}


def failure_reasons(traces: Sequence[RunTrace]) -> Counter[str]:
    """How many failed runs per reason, with the paths' details folded away."""
    return Counter(diagnose(t).split(" (", 1)[0] for t in traces if _not_ok(t))


def _not_ok(trace: RunTrace) -> bool:
    return trace.client is not None and trace.client.outcome not in {"ok", "interrupted"}

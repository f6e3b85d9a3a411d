"""``pipstorm trace`` and ``pipstorm retry-lab`` output: run timelines and a run's retry summary.

Times in a timeline are seconds from the client's launch (from its first request when the
launch is unknown); a gap is from the end of the previous attempt at the same URL to the start
of this one: the client's backoff plus its reconnect.
"""

from __future__ import annotations

from tabulate import tabulate

from pipstorm.engine.analysis.trace import (
    RunDirTraces,
    RunTrace,
    diagnose,
    failure_reasons,
    retry_counts,
)

STDERR_LINES = 6
PATH_SHOWN = 60


def _secs(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _short(path: str) -> str:
    return path if len(path) <= PATH_SHOWN else "..." + path[-(PATH_SHOWN - 3) :]


def render_run(trace: RunTrace) -> str:
    """One run: a header line, every request with its attempt number and gap, the verdict and
    the client's stderr tail."""
    client = trace.client
    first = trace.attempts[0].record.ts if trace.attempts else None
    zero = client.launched if client is not None and client.launched is not None else first
    if client is not None:
        version = getattr(client, "client_version", None)
        head = (
            f"run {trace.run_id}: {client.client}{' ' + version if version else ''} "
            f"{client.project} {client.version or ''}, outcome {client.outcome}, "
            f"exit {client.exit_code if client.exit_code is not None else '-'}, "
            f"{_secs(client.ended - zero if zero is not None else None, 2)} s"
        )
    else:
        head = f"run {trace.run_id}: no client record"
    rows = [
        [
            _secs(a.record.ts - zero if zero is not None else None),
            a.record.op,
            a.record.method,
            _short(a.record.path),
            str(a.number),
            _secs(a.gap_s) + ("*" if a.gap_from_start else ""),
            a.outcome,
            f"{a.record.fault} {a.fault_kind}" if a.record.fault else "-",
            f"{a.record.total_ms:.1f}",
        ]
        for a in trace.attempts
    ]
    lines = [head]
    if rows:
        headers = ("t s", "op", "method", "path", "try", "gap s", "got", "injected", "ms")
        lines.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
        if any(a.gap_from_start for a in trace.attempts):
            lines.append(
                "* the client gave up on the previous attempt while the proxy was still "
                "answering it: gap from that attempt's start"
            )
    else:
        lines.append("(no requests reached the proxy)")
    lines.append(f"=> {diagnose(trace)}")
    if client is not None and client.stderr_tail.strip():
        tail = [ln for ln in client.stderr_tail.splitlines() if ln.strip()][-STDERR_LINES:]
        lines.append("stderr tail:")
        lines.extend(f"  | {ln}" for ln in tail)
    return "\n".join(lines)


def render_summary(data: RunDirTraces) -> str:
    """The whole results folder: retries per operation, recovered runs, failed runs and why."""
    traces = data.traces
    lines = [f"{len(traces)} client run(s), {len(data.data.requests)} request(s)"]
    faults = data.data.meta.faults
    if faults:
        specs = ", ".join(f"{f.get('id')}: {f.get('spec')}" for f in faults)
        lines.append(f"injected fault rules: {specs}")
    counts = retry_counts(traces)
    if counts:
        rows = [[op, str(n), str(r), str(i)] for op, (n, r, i) in counts.items()]
        headers = ("operation", "requests", "retries", "after an injected fault")
        lines += ["", tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
    recovered = [t for t in traces if t.recovered]
    lines += ["", f"recovered after retrying: {len(recovered)} run(s)"]
    lines += [f"  {t.run_id}: {diagnose(t)}" for t in recovered[:10]]
    reasons = failure_reasons(traces)
    failed = sum(reasons.values())
    lines.append(f"failed: {failed} run(s)")
    lines += [f"  {n} x {reason}" for reason, n in reasons.most_common()]
    return "\n".join(lines)

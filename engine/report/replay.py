"""The replay comparison as ``replay.json``, ``replay.md`` and a few terminal lines.

Kept apart from ``pipstorm.engine.workflows.replay`` (which reads, plans and runs) so rendering
can be tested without running anything. ``-`` where a side has no sample (a combined-format
log without ``$request_time`` has no latency).
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from pipstorm.engine.analysis.replay import ReplayComparison
from pipstorm.engine.analysis.stats import Distribution
from pipstorm.engine.rundir.files import write_json_atomic, write_text_atomic

REPLAY_JSON = "replay.json"
REPLAY_MD = "replay.md"
NONE = "-"
#: Unexplained user agents listed by name; the rest are summed.
AGENTS_LISTED = 10


def write_replay(run_dir: Path, comparison: ReplayComparison) -> None:
    """Write ``replay.json`` and ``replay.md`` into the run's folder, atomically."""
    write_json_atomic(run_dir / REPLAY_JSON, comparison.to_dict())
    write_text_atomic(run_dir / REPLAY_MD, render_markdown(comparison))


def _ms(d: Distribution | None) -> str:
    return NONE if d is None else f"{d.p50:.0f} / {d.p95:.0f}"


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in codes.items()) or NONE


def operation_rows(c: ReplayComparison) -> list[list[str]]:
    """Per operation: requests, status codes and p50 / p95 latency, log then replay."""
    return [
        [
            row.op,
            str(row.log_requests),
            str(row.replay_requests),
            _codes(row.log_status),
            _codes(row.replay_status),
            _ms(row.log_latency_ms),
            _ms(row.replay_latency_ms),
        ]
        for row in c.operations
    ]


def minute_rows(c: ReplayComparison) -> list[list[str]]:
    """Per minute of the log's clock: requests and errors (5xx or no answer), log then replay."""
    return [
        [str(m.minute), str(m.log_requests), str(m.replay_requests), str(m.log_errors),
         str(m.replay_errors)]
        for m in c.minutes
    ]  # fmt: skip


def _onset(c: ReplayComparison) -> str:
    d = c.onset_s
    if d is None:
        return "no run reached the index"
    return f"p50 {d.p50:.2f} s, p95 {d.p95:.2f} s, max {d.max:.2f} s over {d.count} runs"


def render_markdown(c: ReplayComparison) -> str:
    """``replay.md``: the facts, then the per-operation and per-minute tables."""
    facts = c.facts
    lines = [
        "# Replay against the original log",
        "",
        f"- speed: x{c.speed:g} (minutes below are the log's)",
        f"- client runs: {c.log_runs} grouped from the log, {c.replay_runs} replayed "
        f"({_codes(c.replay_outcomes)})",
        f"- onset (first request after the intended instant): {_onset(c)}",
    ]
    if c.runs_without_requests:
        lines.append(f"- runs that sent no request: {c.runs_without_requests}")
    for key, label in (
        ("requests", "logged requests in the window"),
        ("unreadable_lines", "unreadable log lines (skipped)"),
        ("outside_window", "requests outside --from/--to"),
        ("unexplained_requests", "requests no client explains"),
    ):
        if key in facts:
            lines.append(f"- {label}: {facts[key]}")
    for reason, count in facts.get("unreplayable", {}).items():
        lines.append(f"- runs not replayed: {count} {reason}")
    for version, count in facts.get("odd_versions", {}).items():
        lines.append(
            f"- {count} runs of {version} ran the kind's usual version (not a release number)"
        )
    agents = facts.get("unexplained_agents", {})
    if agents:
        lines += ["", "## Requests no client explains", ""]
        shown = list(agents.items())[:AGENTS_LISTED]
        rows = [[agent, str(n)] for agent, n in shown]
        rest = sum(agents.values()) - sum(n for _, n in shown)
        if rest:
            rows.append(["(others)", str(rest)])
        lines.append(tabulate(rows, headers=["user agent", "requests"], tablefmt="github"))
        lines.append("")
        lines.append("Replayed as the synthetic `http` client only with `--raw`.")
    lines += [
        "",
        "## Per operation",
        "",
        tabulate(
            operation_rows(c),
            headers=[
                "operation",
                "log",
                "replay",
                "log status",
                "replay status",
                "log p50/p95 ms",
                "replay p50/p95 ms",
            ],
            tablefmt="github",
        ),
        "",
        "## Per minute",
        "",
        tabulate(
            minute_rows(c),
            headers=["minute", "log", "replay", "log errors", "replay errors"],
            tablefmt="github",
        ),
        "",
    ]
    return "\n".join(lines)


def terminal_summary(c: ReplayComparison) -> str:
    """A few lines for the terminal: runs, requests per operation, onset."""
    ops = ", ".join(f"{r.op} {r.log_requests}->{r.replay_requests}" for r in c.operations)
    return "\n".join(
        [
            f"replay: {c.log_runs} runs from the log, {c.replay_runs} replayed "
            f"({_codes(c.replay_outcomes)}) at x{c.speed:g}",
            f"requests (log->replay): {ops or NONE}",
            f"onset: {_onset(c)}",
        ]
    )

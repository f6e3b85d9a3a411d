"""Rendering a :class:`engine.report.model.Report` for people: ``report.md`` and the terminal
summary.

Numbers are rounded only here, at the last step, and rounding is monotonic, so a rendered p99
never exceeds the rendered max.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tabulate import tabulate

from engine.analysis.client_usage import USAGE_HEADERS, usage_rows
from engine.analysis.saturation import warning_lines
from engine.analysis.stats import ClientGroupStats, Distribution
from engine.analysis.thresholds import ThresholdResult

if TYPE_CHECKING:
    from engine.report.model import Report

NONE = "-"
STDERR_SHOWN = 120  # characters of a failed run's reason in the failed-runs table


def fmt_num(value: float | None, digits: int = 1) -> str:
    """A number with fixed decimals, or "-" when there is none."""
    return NONE if value is None else f"{value:.{digits}f}"


def fmt_measured(result: ThresholdResult) -> str:
    """A threshold's measured value with its unit, or why there is none."""
    if result.measured is None:
        return result.note or "not measured"
    if result.unit == "%":
        return f"{result.measured:.2f} %"
    if result.unit == "ms":
        return f"{result.measured:.1f} ms"
    return f"{result.measured:g}"


def fmt_limit(result: ThresholdResult) -> str:
    """``< 2000 ms``, ``<= 0``: the threshold as the seed's table writes it."""
    unit = f" {result.unit}" if result.unit else ""
    return f"{result.comparison} {result.limit:g}{unit}"


def fmt_bytes(n: int) -> str:
    """Bytes in the largest unit that keeps at least one whole unit (1000-based, like HTTP)."""
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.2f} GB"


def _when(epoch: object) -> str:
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return NONE
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (tabulate escapes nothing)."""
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _table(
    rows: Iterable[Sequence[object]],
    headers: Sequence[str],
    fmt: str = "github",
    align: Sequence[str] | None = None,
) -> str:
    """A table; by default the first column left-aligned, the (numeric) others right-aligned."""
    if align is None:
        align = ("left", *("right",) * (len(headers) - 1))
    return tabulate(
        list(rows), headers=list(headers), tablefmt=fmt, disable_numparse=True, colalign=align
    )


def _verdict_line(report: Report) -> str:
    failed = sum(1 for t in report.thresholds if not t.passed)
    total = len(report.thresholds)
    detail = (
        f"{failed} of {total} thresholds failed"
        if failed
        else f"all {total} thresholds passed"
        if total
        else "no thresholds set"
    )
    flags = [f for f, on in (("interrupted", report.interrupted),) if on]
    if report.incomplete and not report.interrupted:
        flags.append("incomplete")
    suffix = f" [{', '.join(flags)} run]" if flags else ""
    return f"{report.verdict.upper()}: {detail}{suffix}"


def _threshold_rows(results: Iterable[ThresholdResult], *, md: bool) -> list[list[str]]:
    rows = []
    for r in results:
        verdict = "PASS" if r.passed else ("**FAIL**" if md else "FAIL")
        rows.append([r.key, r.description, fmt_limit(r), fmt_measured(r), verdict])
    return rows


def _dist_cells(dist: Distribution | None, fields: Sequence[str], digits: int) -> list[str]:
    if dist is None:
        return [NONE] * len(fields)
    return [fmt_num(getattr(dist, f), digits) for f in fields]


def _operation_rows(report: Report) -> list[list[str]]:
    rows = []
    for op, s in report.stats.operations.items():
        rows.append(
            [
                op,
                str(s.count),
                *_dist_cells(s.total_ms, ("p50", "p90", "p95", "p99", "max", "mean"), 1),
                *_dist_cells(s.ttfb_ms, ("p50", "p95"), 1),
                fmt_bytes(s.bytes),
                str(s.error_count),
                fmt_num(s.error_rate, 2),
            ]
        )
    return rows


def _client_row(name: str, g: ClientGroupStats) -> list[str]:
    not_ok = ", ".join(f"{k} {n}" for k, n in g.by_outcome.items() if k != "ok") or NONE
    return [
        name,
        str(g.count),
        str(g.by_outcome.get("ok", 0)),
        not_ok,
        fmt_num(g.error_rate, 2),
        *_dist_cells(g.client_s, ("p50", "p95", "max"), 2),
        *_dist_cells(g.from_intended_s, ("p95", "max"), 2),
        *_dist_cells(g.lag_s, ("p50", "p95", "max"), 3),
        *_dist_cells(g.cpu_s, ("p50",), 2),
    ]


CLIENT_HEADERS = (
    "client",
    "runs",
    "ok",
    "not ok",
    "run err %",
    "client p50 s",
    "client p95 s",
    "client max s",
    "done p95 s",
    "done max s",
    "lag p50 s",
    "lag p95 s",
    "lag max s",
    "CPU p50 s",
)
OP_HEADERS = (
    "operation",
    "requests",
    "p50 ms",
    "p90 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "mean ms",
    "ttfb p50 ms",
    "ttfb p95 ms",
    "size",
    "errors",
    "error %",
)


def _run_lines(report: Report) -> list[str]:
    run = report.run
    profile = run.get("profile")
    prof: Mapping[str, object] = profile if isinstance(profile, Mapping) else {}
    target = run.get("target")
    tgt: Mapping[str, object] = target if isinstance(target, Mapping) else {}
    versions = run.get("versions")
    ver = versions if isinstance(versions, Mapping) else {}
    req = report.stats.requests
    bursts = (
        f"x{prof.get('burst_multiplier', 1)} bursts every {prof['burst_every_s']} s"
        if prof.get("burst_every_s")
        else "no bursts"
    )
    return [
        f"- Profile: `{report.profile_name}` (clients {prof.get('clients', NONE)}, "
        f"tick {prof.get('tick_s', NONE)} s, {bursts}), time scale {run.get('time_scale', 1)}, "
        f"seed {run.get('seed', NONE)}",
        f"- Target: {tgt.get('kind', NONE)} `{tgt.get('index_url', NONE)}`",
        f"- Started {_when(run.get('started'))}, ended {_when(run.get('ended'))}, "
        f"duration {fmt_num(report.duration_s)} s "
        f"(planned {run.get('planned_duration_s', NONE)} s)",
        f"- Requests: {req.count} in {fmt_num(req.window_s)} s "
        f"({fmt_num(req.throughput_rps, 2)} req/s), error rate {fmt_num(req.error_rate, 2)} %, "
        f"p95 {fmt_num(req.latency_p95)} ms, p99 {fmt_num(req.latency_p99)} ms, "
        f"5xx {req.error_5xx_count}, {fmt_bytes(req.bytes)}",
        "- Versions: " + (", ".join(f"{k} {v}" for k, v in ver.items()) or NONE),
    ]


def render_markdown(report: Report, charts: Sequence[tuple[str, str]] = ()) -> str:
    """``report.md``: verdict first, then thresholds, operations, status codes, runs, charts
    (``charts``: (title, PNG file name next to report.md)), notes."""
    stats = report.stats
    parts = [
        f"# pipstorm report: {report.profile_name}",
        f"**{_verdict_line(report)}**",
        *_generator_warning_md(report),
        "\n".join(_run_lines(report)),
        "## Thresholds",
        _table(
            _threshold_rows(report.thresholds, md=True),
            ("key", "metric", "threshold", "measured", "result"),
            align=("left", "left", "right", "right", "left"),
        )
        if report.thresholds
        else "No thresholds set.",
        "## Requests by operation (latency: total time per request)",
        _table(_operation_rows(report), OP_HEADERS)
        if stats.operations
        else "No requests were recorded.",
        "## Status codes",
        _table(stats.requests.status_code_counts.items(), ("status", "count"))
        if stats.requests.status_code_counts
        else "None.",
    ]
    if stats.requests.transport_errors:
        parts += [
            "## Transport errors (no complete upstream response)",
            _table(stats.requests.transport_errors.items(), ("kind", "count")),
        ]
    parts.append(
        "## Client runs\n\nclient: the client process, launch to end; done: intended start to "
        "end, what a user scheduled at that time waited; lag: how late the client launched."
    )
    if stats.clients.all.count:
        rows = [_client_row(k, g) for k, g in stats.clients.by_client.items()]
        if len(rows) > 1:
            rows.append(_client_row("all", stats.clients.all))
        parts.append(_table(rows, CLIENT_HEADERS))
    else:
        parts.append("No client runs were recorded.")
    if report.client_kinds:
        parts += [
            "### Client kinds: versions, user agents seen by the index, requests per run",
            _table(usage_rows(report.client_kinds), USAGE_HEADERS),
        ]
    if report.failed_runs:
        shown = len(report.failed_runs)
        parts += [
            f"### Failed client runs (first {shown} of {stats.clients.all.failed_count})",
            _table(
                (
                    [
                        r.run_id,
                        r.client,
                        _cell(f"{r.project} {r.version or ''}"),
                        r.outcome,
                        NONE if r.exit_code is None else str(r.exit_code),
                        _cell(_reason(report.failure_reasons.get(r.run_id), r.stderr_tail)),
                    ]
                    for r in report.failed_runs
                ),
                ("run", "client", "job", "outcome", "exit", "reason"),
            ),
        ]
    if charts:
        parts += [
            "## Charts\n\nAll of them, with the tables, in one page: [report.html](report.html).",
            "\n\n".join(f"![{title}]({name})" for title, name in charts),
        ]
    if report.notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in report.notes)]
    parts.append(f"_Generated {report.generated_at} from `{report.run_dir}`._")
    return "\n\n".join(parts) + "\n"


def _reason(error: str | None, stderr_tail: str) -> str:
    lines = [ln for ln in stderr_tail.splitlines() if ln.strip()]
    reason = error or (lines[-1] if lines else "")
    return reason if len(reason) <= STDERR_SHOWN else reason[: STDERR_SHOWN - 3] + "..."


def _generator_warning_md(report: Report) -> list[str]:
    """A blockquote right under the verdict when the generator was the bottleneck."""
    lines = warning_lines(report.generator)
    if not lines:
        return []
    head, *middle, advice = lines
    quoted = [f"> **{head}**", ">", *(f"> {line.strip()}" for line in middle), ">", f"> {advice}"]
    return ["\n".join(quoted)]


def terminal_summary(report: Report) -> str:
    """A compact summary for the end of ``pipstorm run`` / ``pipstorm report``."""
    stats = report.stats
    lines = [_verdict_line(report), *warning_lines(report.generator)]
    if report.thresholds:
        lines += [
            "",
            _table(
                [
                    [k, lim, m, v]
                    for k, _, lim, m, v in _threshold_rows(report.thresholds, md=False)
                ],
                ("threshold", "limit", "measured", "result"),
                "simple",
                ("left", "right", "right", "left"),
            ),
        ]
    if stats.operations:
        rows = [
            [
                op,
                str(s.count),
                *_dist_cells(s.total_ms, ("p50", "p95", "p99"), 1),
                str(s.error_count),
            ]
            for op, s in stats.operations.items()
        ]
        lines += [
            "",
            _table(
                rows, ("operation", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"), "simple"
            ),
        ]
    runs = stats.clients.all
    outcomes = ", ".join(f"{k} {n}" for k, n in runs.by_outcome.items()) or "none"
    lag = NONE if runs.lag_s is None else f"{runs.lag_s.p95:.3f}/{runs.lag_s.max:.3f}"
    lines += ["", f"client runs: {runs.count} ({outcomes}); lag p95/max {lag} s"]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)

"""What every rendering of a report shows, as rows of text: built once, here.

``report.md``, ``report.html`` and the terminal summary differ in markup only; the cells they
show (a threshold's measured value, a failed run's reason, the run's facts) come from these
builders, so the three can never disagree. Numbers are rounded only here, at the last step, and
rounding is monotonic, so a rendered p99 never exceeds the rendered max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipstorm.engine.analysis.client_usage import ClientKindUsage
from pipstorm.engine.analysis.generator.onset import ONSET_P95_S, TickOnset
from pipstorm.engine.analysis.generator.saturation import warning_lines
from pipstorm.engine.analysis.stats import ClientGroupStats, Distribution
from pipstorm.engine.analysis.target.server_series import summaries
from pipstorm.engine.analysis.thresholds import ThresholdResult
from pipstorm.engine.report.model import Report

NONE = "-"
REASON_SHOWN = 120  # characters of a failed run's reason in the failed-runs table

THRESHOLD_HEADERS = ("key", "metric", "threshold", "measured", "result")
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
CLIENT_NOTE = (
    "client: the client process, launch to end; done: intended start to end, what a user "
    "scheduled at that time waited; lag: how late the client launched."
)
USAGE_HEADERS = (
    "client",
    "runs",
    "versions",
    "user agents (requests)",
    "requests/run",
    "bytes/run",
)
FAILED_HEADERS = ("run", "client", "job", "outcome", "exit", "reason")
ONSET_HEADERS = (
    "tick",
    "at s",
    "runs",
    "reached",
    "onset p50 s",
    "onset p95 s",
    "onset max s",
    "spread s",
    "gated late",
    "CPU to gate p50 ms",
    "CPU to gate p90 ms",
)
ONSET_NOTE = (
    "onset: from a run's intended instant to its first request at the proxy, what the index "
    "felt; spread: first to last first-request of a burst. An onset p95 above "
    f"{ONSET_P95_S:g} s means the bursts the index saw were not the profile's. Gated late: warm "
    "runs whose preparation ended after their instant (their lead was too short for what it "
    "cost: the CPU to the gate, beside the probe's in run.json's launch costs)."
)

CLOUDWATCH_HEADERS = ("series", "CloudWatch metric", "stat", "min", "mean", "max", "last", "points")
CLOUDWATCH_NOTE = (
    "The AWS stack's own view over the run's window (padded by a period), one value per period: "
    "ECS service, EFS file system, ALB."
)


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


def fmt_bytes(n: float) -> str:
    """Bytes in the largest unit that keeps at least one whole unit (1000-based, like HTTP)."""
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.2f} GB"


def fmt_metric(value: float, unit: str) -> str:
    """A CloudWatch value in the unit people read it in: %, ms, GiB, or a count."""
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "s":
        return f"{value * 1000:.0f} ms"
    if unit == "bytes":
        return f"{value / 2**30:.2f} GiB"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def cloudwatch_rows(report: Report) -> list[list[str]]:
    """One row per CloudWatch series with datapoints (none for a run without CloudWatch)."""
    data = report.data.cloudwatch
    if data is None:
        return []
    return [
        [
            s.key,
            f"{s.namespace} {s.name}",
            s.stat,
            *(fmt_metric(v, s.unit) for v in (s.minimum, s.mean, s.maximum, s.last)),
            str(s.points),
        ]
        for s in summaries(data)
    ]


def fmt_when(epoch: float | None) -> str:
    """An epoch time as ISO 8601 UTC, or "-"."""
    return NONE if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat("T", "seconds")


def cause_lines(report: Report) -> list[str]:
    """Why a failed verdict failed, when the target did: one line per cause
    (``pipstorm.engine.analysis.target.failure``: died, stalled, refused, reset, timed out, 5xx),
    then the failed runs' reasons counted. Nothing for a passing verdict: its notes say it."""
    if report.verdict == "pass":
        return []
    lines = [cause.text for cause in report.target_failure]
    if report.failed_run_causes:
        counted = "; ".join(f"{n} {why}" for why, n in report.failed_run_causes.items())
        lines.append(f"failed client runs: {_shorten(counted, 2 * REASON_SHOWN)}")
    return lines


@dataclass(frozen=True)
class ThresholdRow:
    """One threshold as shown: the cells and whether it passed (for the badge or bold)."""

    key: str
    metric: str
    limit: str
    measured: str
    passed: bool

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"


def threshold_rows(report: Report) -> list[ThresholdRow]:
    return [
        ThresholdRow(r.key, r.description, fmt_limit(r), fmt_measured(r), r.passed)
        for r in report.thresholds
    ]


def dist_cells(dist: Distribution | None, fields: Sequence[str], digits: int) -> list[str]:
    """The named fields of a distribution, formatted, or "-" each when there is none."""
    if dist is None:
        return [NONE] * len(fields)
    return [fmt_num(getattr(dist, f), digits) for f in fields]


def operation_rows(report: Report) -> list[list[str]]:
    return [
        [
            op,
            str(s.count),
            *dist_cells(s.total_ms, ("p50", "p90", "p95", "p99", "max", "mean"), 1),
            *dist_cells(s.ttfb_ms, ("p50", "p95"), 1),
            fmt_bytes(s.bytes),
            str(s.error_count),
            fmt_num(s.error_rate, 2),
        ]
        for op, s in report.stats.operations.items()
    ]


def status_rows(report: Report) -> list[list[str]]:
    return [[k, str(v)] for k, v in report.stats.requests.status_code_counts.items()]


def transport_rows(report: Report) -> list[list[str]]:
    return [[k, str(v)] for k, v in report.stats.requests.transport_errors.items()]


SHARD_HEADERS = (
    "shard",
    "status",
    "host",
    "runs",
    "recorded",
    "failed",
    "lost",
    "lost after s",
    "onset p95 s",
    "lag p95 s",
    "CPU-s/run",
    "host CPU %",
    "clock offset ms",
    "dispatch ms",
)
SHARD_NOTE = (
    "Each shard played its share of the schedule from its own generator (own proxy and pool), "
    "all from one start time; the tables above are computed from every shard's samples together. "
    "A lost shard's runs are never replayed."
)


def shard_table_rows(report: Report) -> list[list[str]]:
    """One row per shard of a run spread over generators (none for a one-machine run)."""
    return [
        [
            str(s.shard),
            s.status,
            s.host or NONE,
            str(s.runs_planned),
            str(s.runs_recorded),
            str(s.runs_failed),
            str(s.runs_lost),
            fmt_num(s.lost_after_s, 1),
            fmt_num(s.onset_p95_s, 2),
            fmt_num(s.lag_p95_s, 2),
            fmt_num(s.cpu_s_per_run, 2),
            fmt_num(s.host_cpu_percent, 0),
            fmt_num(s.clock_offset_ms, 1),
            fmt_num(s.dispatch_ms, 0),
        ]
        for s in report.shards
    ]


def onset_rows(report: Report) -> list[list[str]]:
    """One row per burst tick, then one for the base ticks together."""
    onset = report.onset
    if onset is None:
        return []
    groups = [*onset.bursts, *([onset.base] if onset.base is not None else [])]
    return [
        [
            f"burst {g.tick}" if g.tick is not None else "base ticks",
            fmt_num(g.offset_s, 0),
            str(g.runs),
            str(g.reached),
            *dist_cells(g.onset_s, ("p50", "p95", "max"), 2),
            fmt_num(g.spread_s, 2),
            NONE if g.gated_late is None else str(g.gated_late),
            *(fmt_num(None if d is None else 1000 * d, 1) for d in _gate_cpu(g)),
        ]
        for g in groups
    ]


def _gate_cpu(group: TickOnset) -> tuple[float | None, float | None]:
    cpu = group.gate_cpu_s
    return (None, None) if cpu is None else (cpu.p50, cpu.p90)


def _client_row(name: str, g: ClientGroupStats) -> list[str]:
    not_ok = ", ".join(f"{k} {n}" for k, n in g.by_outcome.items() if k != "ok") or NONE
    return [
        name,
        str(g.count),
        str(g.by_outcome.get("ok", 0)),
        not_ok,
        fmt_num(g.error_rate, 2),
        *dist_cells(g.client_s, ("p50", "p95", "max"), 2),
        *dist_cells(g.from_intended_s, ("p95", "max"), 2),
        *dist_cells(g.lag_s, ("p50", "p95", "max"), 3),
        *dist_cells(g.cpu_s, ("p50",), 2),
    ]


def client_rows(report: Report) -> list[list[str]]:
    """One row per client kind, plus "all" when there are several."""
    clients = report.stats.clients
    if not clients.all.count:
        return []
    rows = [_client_row(k, g) for k, g in clients.by_client.items()]
    if len(rows) > 1:
        rows.append(_client_row("all", clients.all))
    return rows


def usage_rows(usage: Sequence[ClientKindUsage]) -> list[list[str]]:
    """Rows for a table: client, runs, versions, user agents, requests/run by op, bytes/run."""
    return [
        [
            u.client,
            str(u.runs),
            ", ".join(f"{v} ({n})" for v, n in u.versions.items()),
            ", ".join(f"{a} ({n})" for a, n in u.user_agents.items()) or NONE,
            ", ".join(f"{op} {n:g}" for op, n in u.requests_per_run.items()) or NONE,
            f"{u.bytes_per_run:,.0f}",
        ]
        for u in usage
    ]


def failed_rows(report: Report) -> list[list[str]]:
    """The failed runs shown, each with its reason (``Report.failure_reason``), shortened."""
    return [
        [
            r.run_id,
            r.client,
            f"{r.project} {r.version or ''}".strip(),
            r.outcome,
            NONE if r.exit_code is None else str(r.exit_code),
            _shorten(report.failure_reason(r)),
        ]
        for r in report.failed_runs
    ]


def _shorten(text: str, limit: int = REASON_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Fact:
    """One line of the run's facts: a label, text, and the values people copy (shown as code)."""

    label: str
    text: str
    code: str | None = None


def run_facts(report: Report) -> list[Fact]:
    """Profile, target, times, request totals and versions of the run."""
    run = report.run
    prof = run.profile
    req = report.stats.requests
    bursts = (
        f"x{prof.get('burst_multiplier', 1)} bursts every {prof['burst_every_s']} s"
        if prof.get("burst_every_s")
        else "no bursts"
    )
    return [
        Fact(
            "Profile",
            f"(clients {prof.get('clients', NONE)}, tick {prof.get('tick_s', NONE)} s, {bursts}), "
            f"time scale {run.time_scale:g}, seed {run.seed}",
            report.profile_name,
        ),
        Fact("Target", str(run.target.get("kind", NONE)), str(run.target.get("index_url", NONE))),
        Fact(
            "Started",
            f"{fmt_when(run.started)}, ended {fmt_when(run.ended)}, duration "
            f"{fmt_num(report.duration_s)} s (planned {fmt_num(run.planned_duration_s, 0)} s)",
        ),
        Fact(
            "Requests",
            f"{req.count} in {fmt_num(req.window_s)} s ({fmt_num(req.throughput_rps, 2)} req/s), "
            f"error rate {fmt_num(req.error_rate, 2)} %, p95 {fmt_num(req.latency_p95)} ms, "
            f"p99 {fmt_num(req.latency_p99)} ms, 5xx {req.error_5xx_count}, {fmt_bytes(req.bytes)}",
        ),
        *([Fact("Connections", conns)] if (conns := connections_text(report)) else []),
        Fact("Versions", ", ".join(f"{k} {v}" for k, v in run.versions.items()) or NONE),
        *([Fact("Launch", launch_text(run.launch))] if run.launch else []),
    ]


def connections_text(report: Report) -> str | None:
    """``30 opened by clients, 15 opened to the index (for 60 requests)``: how many
    connections the clients made for the run's requests, and how many the proxy made to the
    index for them (what the index's accept queue and workers saw); None for records without
    these fields (runs before they were recorded)."""
    req = report.stats.requests
    if req.client_connections is None and req.upstream_connections is None:
        return None
    return (
        f"{fmt_num(req.client_connections, 0)} opened by clients, "
        f"{fmt_num(req.upstream_connections, 0)} opened to the index (for {req.count} requests)"
    )


def launch_text(launch: dict[str, Any]) -> str:
    """How client processes started: the mode per kind, lead time, what a prepared run held."""
    kinds = launch.get("kinds") or {}
    text = f"{launch.get('mode', NONE)} ({', '.join(f'{k} {m}' for k, m in kinds.items())})"
    if isinstance(launch.get("ahead_s"), int | float):
        text += f"; runs prepared {launch['ahead_s']:g} s ahead"
    if launch.get("peak_mb"):
        text += f", at most {launch.get('peak_prepared')} gated ({launch['peak_mb']:g} MB)"
    if launch.get("touch_ms_per_mb"):
        text += f", memory first touched +{launch['touch_ms_per_mb']:g} ms of CPU per MB"
    if launch.get("problem"):
        text += f"; could not be prepared as played: {launch['problem']}"
    return text


@dataclass(frozen=True)
class GeneratorWarning:
    """``pipstorm.engine.analysis.generator.saturation``'s warning: a headline, what may be
    inflated, advice."""

    headline: str
    intro: str
    items: tuple[str, ...]
    advice: str


def generator_warning(report: Report) -> GeneratorWarning | None:
    lines = warning_lines(report.generator)
    if not lines:
        return None
    head, intro, *items, advice = lines
    return GeneratorWarning(
        headline=head.removeprefix("WARNING: "),
        intro=intro,
        items=tuple(i.strip().removeprefix("- ") for i in items),
        advice=advice,
    )

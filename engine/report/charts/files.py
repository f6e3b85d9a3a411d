"""The charts of one report: bucket the run's streams, draw, write the PNGs.

The PNGs are written next to ``report.md`` (``chart-<key>.png``) and linked from it; the same
bytes are embedded in ``report.html``. Charts of an earlier rebuild that no longer have data
(say, a host chart after ``host.jsonl`` was removed) are deleted, so the folder never shows a
chart the report does not describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipstorm.engine.analysis.timeseries import host_series, request_series, run_origin
from pipstorm.engine.report.charts.draw import Chart, render_charts
from pipstorm.engine.report.charts.server_series import cloudwatch_charts
from pipstorm.engine.report.charts.target import target_chart
from pipstorm.engine.report.model import Report
from pipstorm.engine.rundir.files import write_bytes_atomic

CHART_GLOB = "chart-*.png"


@dataclass(frozen=True)
class ReportCharts:
    """The rendered charts, and whether host samples were found (the HTML says so if not)."""

    charts: tuple[Chart, ...]
    host_sampled: bool
    host_file_present: bool
    error: str | None = None  # why no chart could be drawn, when drawing failed

    @property
    def links(self) -> list[tuple[str, str]]:
        """(title, file name) of each chart, for report.md."""
        return [(c.title, c.filename) for c in self.charts]


def build_charts(report: Report) -> ReportCharts:
    """Render every chart the run has data for (nothing is written).

    A chart is a view, not the verdict: if drawing fails the error is returned in
    ``ReportCharts.error`` (and shown in report.html) rather than raised, so a long run
    still ends with its report.json, report.md and exit code.
    """
    try:
        return _build_charts(report)
    except Exception as exc:  # a chart is a view, never worth losing the verdict over
        return ReportCharts(
            (),
            host_sampled=False,
            host_file_present=report.data.host_file_present,
            error=f"{type(exc).__name__}: {exc}",
        )


def _build_charts(report: Report) -> ReportCharts:
    data = report.data
    requests, clients = data.requests, data.clients
    origin = run_origin(report.run, requests, clients)
    if origin is None:  # nothing was recorded at all
        return ReportCharts((), host_sampled=False, host_file_present=data.host_file_present)
    span = max(
        report.duration_s or 0.0,
        max((c.ended - origin for c in clients), default=0.0),
        max((r.end - origin for r in requests), default=0.0),
        1.0,
    )
    series = request_series(requests, origin, span) if requests else None
    host = host_series(data.host, origin) if data.host else None
    charts = render_charts(
        series,
        clients,
        None if host is None or host.empty else host,
        origin=origin,
        span_s=span,
        ticks=[t for t in report.run.burst_ticks_s if t <= span],
        onset=None if report.onset is None else report.onset.by_run,
    )
    # The server side goes right after the latency charts it explains.
    ticks = [t for t in report.run.burst_ticks_s if t <= span]
    server = cloudwatch_charts(data.cloudwatch, origin, span, ticks)
    after = next((i + 1 for i, c in enumerate(charts) if c.key == "latency"), len(charts))
    charts[after:after] = server
    target = report.target
    if data.target_cgroup and target is not None:
        drawn = target_chart(
            data.target_cgroup,
            target.sizing,
            origin=origin,
            span_s=span,
            ticks=[t for t in report.run.burst_ticks_s if t <= span],
        )
        # Beside the latency it explains: right after the latency chart.
        keys = [c.key for c in charts]
        charts.insert(keys.index("latency") + 1 if "latency" in keys else len(charts), drawn)
    return ReportCharts(
        tuple(charts),
        host_sampled=host is not None and not host.empty,
        host_file_present=data.host_file_present,
    )


def write_chart_files(run_dir: Path, charts: ReportCharts) -> None:
    """Write each chart's PNG atomically and remove stale ``chart-*.png`` of older rebuilds."""
    keep = {c.filename for c in charts.charts}
    for chart in charts.charts:
        write_bytes_atomic(run_dir / chart.filename, chart.png)
    for old in run_dir.glob(CHART_GLOB):
        if old.name not in keep:
            old.unlink(missing_ok=True)

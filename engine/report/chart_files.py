"""The charts of one report: read the run's streams, bucket them, draw, write the PNGs.

The PNGs are written next to ``report.md`` (``chart-<key>.png``) and linked from it; the same
bytes are embedded in ``report.html``. Charts of an earlier rebuild that no longer have data
(say, a host chart after ``host.jsonl`` was removed) are deleted, so the folder never shows a
chart the report does not describe.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.analysis.timeseries import (
    HOST_FILE,
    burst_ticks,
    load_host_series,
    request_series,
    run_origin,
)
from engine.report.charts import Chart, render_charts
from engine.rundir.records import CLIENTS_FILE, REQUESTS_FILE, load_clients, load_requests

if TYPE_CHECKING:
    from engine.report.model import Report

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
            host_file_present=_has_host(report.run_dir),
            error=f"{type(exc).__name__}: {exc}",
        )


def _build_charts(report: Report) -> ReportCharts:
    run_dir = report.run_dir
    requests = (
        load_requests(run_dir / REQUESTS_FILE)[0] if (run_dir / REQUESTS_FILE).is_file() else []
    )
    clients = load_clients(run_dir / CLIENTS_FILE)[0] if (run_dir / CLIENTS_FILE).is_file() else []
    origin = run_origin(report.run, requests, clients)
    if origin is None:  # nothing was recorded at all
        return ReportCharts((), host_sampled=False, host_file_present=_has_host(run_dir))
    ticks = burst_ticks(report.run)
    span = max(
        report.duration_s or 0.0,
        max((c.ended - origin for c in clients), default=0.0),
        max((r.end - origin for r in requests), default=0.0),
        1.0,
    )
    series = request_series(requests, origin, span) if requests else None
    host = load_host_series(run_dir, origin)
    charts = render_charts(
        series,
        clients,
        host,
        origin=origin,
        span_s=span,
        ticks=[t for t in ticks if t <= span],
    )
    return ReportCharts(
        tuple(charts), host_sampled=host is not None, host_file_present=_has_host(run_dir)
    )


def _has_host(run_dir: Path) -> bool:
    return (run_dir / HOST_FILE).is_file()


def write_chart_files(run_dir: Path, charts: ReportCharts) -> None:
    """Write each chart's PNG atomically and remove stale ``chart-*.png`` of older rebuilds."""
    keep = {c.filename for c in charts.charts}
    for chart in charts.charts:
        _write_bytes_atomic(run_dir / chart.filename, chart.png)
    for old in run_dir.glob(CHART_GLOB):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.chmod(0o644)  # mkstemp makes 0600; a chart is no secret
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

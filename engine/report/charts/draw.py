"""The report's charts, drawn with matplotlib's Agg renderer into PNG bytes.

Figures are made with :class:`matplotlib.figure.Figure` directly, never ``pyplot``: no global
figure registry, no backend to choose, no display needed, safe to call from any thread. Each
chart is rendered once; the same PNG bytes go next to ``report.md`` and, base64-encoded, into
the self-contained ``report.html``.

Every time axis is seconds after the run's offset 0, labelled m:ss, with the burst ticks drawn
as faint vertical lines, so a latency spike can be read against the burst that caused it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, MultipleLocator

from pipstorm.engine.analysis.stats import percentile
from pipstorm.engine.analysis.timeseries import HostSeries, RequestSeries
from pipstorm.engine.rundir.records import ClientRecord

DPI = 110
WIDTH_IN = 11.0
PANEL_HEIGHT_IN = 2.9
#: Above this ratio of largest to smallest latency the latency axes are logarithmic.
LOG_SCALE_RATIO = 30.0
HIST_BINS = 40

OP_COLOURS = {
    "listing": "#1f77b4",
    "download": "#ff7f0e",
    "redirect": "#9467bd",
    "metadata": "#17becf",
    "upload": "#8c564b",
    "other": "#7f7f7f",
}
OUTCOME_COLOURS = {
    "ok": "#2ca02c",
    "failed": "#d62728",
    "timeout": "#ff7f0e",
    "error": "#9467bd",
    "interrupted": "#7f7f7f",
}
HOST_COLOURS = {
    "host": "#444444",
    "proxy": "#1f77b4",
    "target": "#ff7f0e",
    "clients": "#2ca02c",
    "generator": "#9467bd",
}
BURST_COLOUR = "#d62728"
_SPARE = ("#e377c2", "#bcbd22", "#8c564b", "#17becf", "#7f7f7f")
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class Chart:
    """One rendered chart: where it goes (``filename`` next to report.md) and what it shows."""

    key: str
    title: str
    filename: str
    caption: str
    png: bytes


def _colour(table: dict[str, str], name: str, index: int) -> str:
    return table.get(name, _SPARE[index % len(_SPARE)])


def _status_colour(code: str) -> str:
    if code.startswith("2"):
        return "#2ca02c"
    if code.startswith("3"):
        return "#1f77b4"
    if code.startswith("4"):
        return "#ff7f0e"
    if code.startswith("5"):
        return "#d62728"
    return "#222222" if code == "transport" else "#aaaaaa"


def _mmss(value: float, _pos: object = None) -> str:
    sign = "-" if value < 0 else ""
    whole = round(abs(value))
    return f"{sign}{whole // 60}:{whole % 60:02d}"


def time_axis(ax: Axes, span_s: float, ticks: Sequence[float], *, label: bool) -> None:
    """m:ss ticks at a round step, the burst ticks as faint red lines, 0..span visible."""
    step = next((s for s in _TICK_STEPS_S if span_s / s <= 12), _TICK_STEPS_S[-1])
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(_mmss))
    span = max(span_s, 1.0)
    ax.set_xlim(-span * 0.01, span * 1.01)  # a margin, so runs and bursts at 0 stay visible
    for i, tick in enumerate(ticks):
        ax.axvline(
            tick,
            color=BURST_COLOUR,
            alpha=0.35,
            linestyle=":",
            linewidth=1.2,
            zorder=3,
            label="burst tick" if i == 0 else None,
        )
    ax.grid(True, axis="y", alpha=0.3)
    if label:
        ax.set_xlabel("time since start (m:ss)")


def panel_figure(panels: int, height: float = PANEL_HEIGHT_IN) -> Figure:
    """A figure for ``panels`` stacked panels, the width every report chart shares."""
    return Figure(figsize=(WIDTH_IN, height * panels), dpi=DPI, layout="constrained")


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (no software tag: the same chart gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def add_legend(ax: Axes, *, inside: bool = False) -> None:
    """The legend above the axes on the right, opposite the left-aligned title, so it never
    hides data (``inside``: upper right in the axes, for charts whose top is empty anyway).
    Only when something is labelled: an empty legend is a warning, and warnings are errors."""
    _, labels = ax.get_legend_handles_labels()
    if not labels:
        return
    if inside:
        ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
        return
    ax.legend(
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncols=len(labels),
        fontsize="small",
        frameon=False,
        borderaxespad=0.2,
        handlelength=1.6,
        columnspacing=1.0,
    )


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _stacked_bars(
    ax: Axes,
    series: RequestSeries,
    stacks: Sequence[tuple[str, Sequence[float], str]],
) -> None:
    bottom = [0.0] * len(series.starts)
    for name, values, colour in stacks:
        ax.bar(
            series.starts,
            values,
            width=series.width_s,
            bottom=bottom,
            align="edge",
            color=colour,
            label=name,
            linewidth=0,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]


def rate_chart(series: RequestSeries, span_s: float, ticks: Sequence[float]) -> Figure:
    """Requests per second by operation, stacked, per time bucket."""
    fig = panel_figure(1)
    ax = fig.add_subplot()
    _stacked_bars(
        ax,
        series,
        [
            (op, rates, _colour(OP_COLOURS, op, i))
            for i, (op, rates) in enumerate(series.rate_by_op.items())
        ],
    )
    time_axis(ax, span_s, ticks, label=True)
    ax.set_ylabel("requests / s")
    ax.set_title(f"Request rate by operation ({series.width_s:g} s buckets)", loc="left")
    add_legend(ax)
    return fig


def _latency_scale(values: Sequence[float]) -> str:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_RATIO:
        return "log"
    return "linear"


def latency_chart(series: RequestSeries, span_s: float, ticks: Sequence[float]) -> Figure:
    """p50/p95/p99 latency per time bucket, one panel per operation."""
    ops = list(series.latency_by_op)
    fig = panel_figure(len(ops), 2.4)
    axes = fig.subplots(len(ops), 1, sharex=True, squeeze=False)[:, 0]
    styles = {"p50": (":", 1.2), "p95": ("-", 1.8), "p99": ("--", 1.2)}
    for i, (ax, op) in enumerate(zip(axes, ops, strict=True)):
        colour = _colour(OP_COLOURS, op, i)
        shown: list[float] = []
        for name, values in series.latency_by_op[op].items():
            style, width = styles.get(name, ("-", 1.0))
            ax.plot(
                series.starts,
                _nan(values),
                linestyle=style,
                linewidth=width,
                marker="o",
                markersize=2.5,
                color=colour,
                label=name,
            )
            shown.extend(v for v in values if v is not None)
        ax.set_yscale(_latency_scale(shown))
        ax.set_ylabel("ms")
        ax.set_title(f"{op}: latency p50 / p95 / p99", loc="left", fontsize="medium")
        time_axis(ax, span_s, ticks, label=ax is axes[-1])
        add_legend(ax)
    return fig


def _is_error_status(code: str) -> bool:
    return not code.isdigit() or int(code) >= 400


def status_chart(series: RequestSeries, span_s: float, ticks: Sequence[float]) -> Figure:
    """Responses per second by status code, stacked; errors (>= 400, transport) again in a
    panel of their own, since a few 502s among thousands of 200s are invisible on one scale."""
    stacks = [
        (code, [c / series.width_s for c in counts], _status_colour(code))
        for code, counts in series.status_counts.items()
    ]
    errors = [s for s in stacks if _is_error_status(s[0]) and any(s[1])]
    fig = panel_figure(2 if errors else 1, 2.6)
    axes = fig.subplots(2 if errors else 1, 1, sharex=True, squeeze=False)[:, 0]
    _stacked_bars(axes[0], series, stacks)
    axes[0].set_ylabel("responses / s")
    axes[0].set_title("Status codes over time", loc="left")
    if errors:
        _stacked_bars(axes[1], series, errors)
        axes[1].set_ylabel("errors / s")
        axes[1].set_title("Errors only (status >= 400, transport)", loc="left", fontsize="medium")
    for ax in axes:
        time_axis(ax, span_s, ticks, label=ax is axes[-1])
        add_legend(ax)
    return fig


def distribution_chart(series: RequestSeries) -> Figure:
    """Latency histogram per operation on log-spaced bins, with each p95 and p99 marked."""
    fig = panel_figure(1, 3.4)
    ax = fig.add_subplot()
    everything = [v for s in series.samples_by_op.values() for v in s]
    low = max(min(everything), 0.01)
    high = max(*everything, low * 2)
    edges = [low * (high / low) ** (k / HIST_BINS) for k in range(HIST_BINS + 1)]
    edges[0], edges[-1] = low * 0.999, high * 1.001
    for i, (op, samples) in enumerate(series.samples_by_op.items()):
        colour = _colour(OP_COLOURS, op, i)
        clipped = [min(max(v, low), high) for v in samples]
        weights = [100.0 / len(samples)] * len(samples)
        ax.hist(
            clipped,
            bins=edges,
            weights=weights,
            histtype="step",
            linewidth=1.8,
            color=colour,
            label=f"{op} ({len(samples)})",
        )
        for q, style in ((95.0, "--"), (99.0, ":")):  # the report's percentile definition
            ax.axvline(percentile(samples, q), color=colour, linestyle=style, linewidth=1)
    ax.set_xscale("log")
    # Plain numbers (3, 20, 500) rather than 3x10^0: people read milliseconds, not exponents.
    ax.xaxis.set_major_formatter(LogFormatter())
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.5)))
    ax.set_xlabel("latency, total time per request (ms, log scale); dashed p95, dotted p99")
    ax.set_ylabel("% of the operation's requests")
    ax.set_title("Latency distribution per operation", loc="left")
    ax.grid(True, alpha=0.3)
    add_legend(ax)
    return fig


def clients_chart(
    clients: Sequence[ClientRecord],
    origin: float,
    span_s: float,
    ticks: Sequence[float],
    onset: Mapping[str, float] | None = None,
) -> Figure:
    """Each client run at its intended start: its wall time (top), launch lag (middle) and
    onset, intended instant to first request at the proxy (bottom, where runs sent any)."""
    onset = onset or {}
    fig = panel_figure(3 if onset else 2, 2.6)
    axes = fig.subplots(3 if onset else 2, 1, sharex=True)
    top, middle = axes[0], axes[1]
    outcomes = sorted({c.outcome for c in clients}, key=lambda o: (o != "ok", o))
    for i, outcome in enumerate(outcomes):
        group = [c for c in clients if c.outcome == outcome]
        colour = _colour(OUTCOME_COLOURS, outcome, i)
        launched = [c for c in group if c.launched is not None]
        marker, size = ("o", 10) if outcome == "ok" else ("x", 28)
        top.scatter(
            [c.intended - origin for c in launched],
            [c.ended - c.launched for c in launched if c.launched is not None],
            s=size,
            marker=marker,
            alpha=0.6 if outcome == "ok" else 0.9,
            color=colour,
            label=f"{outcome} ({len(group)})",
            linewidths=0,
        )
        middle.scatter(
            [c.intended - origin for c in group],
            [c.lag_s for c in group],
            s=size,
            marker=marker,
            alpha=0.6 if outcome == "ok" else 0.9,
            color=colour,
            linewidths=0,
        )
        if onset:
            reached = [c for c in group if c.run_id in onset]
            axes[2].scatter(
                [c.intended - origin for c in reached],
                [onset[c.run_id] for c in reached],
                s=size,
                marker=marker,
                alpha=0.6 if outcome == "ok" else 0.9,
                color=colour,
                linewidths=0,
            )
    top.set_ylabel("client run (s)")
    top.set_title("Client runs by intended start: wall time of the client process", loc="left")
    middle.set_ylabel("lag (s)")
    middle.set_title("Launch lag: how late each run started", loc="left", fontsize="medium")
    if onset:
        axes[2].set_ylabel("onset (s)")
        axes[2].set_title(
            "Onset: intended instant to the run's first request at the index",
            loc="left",
            fontsize="medium",
        )
        axes[2].set_ylim(bottom=0)
    for ax in axes:
        time_axis(ax, span_s, ticks, label=ax is axes[-1])
    top.set_ylim(bottom=0)
    add_legend(top)
    return fig


def host_chart(host: HostSeries, span_s: float, ticks: Sequence[float]) -> Figure:
    """CPU of the host and its processes, host memory %, and the processes' resident memory."""
    cpu_title = (
        f"CPU of the generator host and its processes, % of all {host.cores} cores"
        if host.cores
        else "CPU % (host: of all cores; processes: 100 per busy core)"
    )
    panels = [
        (lines, title, label, limit)
        for lines, title, label, limit in (
            (host.cpu_percent, cpu_title, "CPU %", None),
            (host.memory_percent, "Memory of the host, % used", "memory %", 100.0),
            (host.memory_mb, "Resident memory (RSS) of the processes", "RSS (MB)", None),
        )
        if lines
    ]
    fig = panel_figure(len(panels), 2.2)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (lines, title, label, limit) in zip(axes, panels, strict=True):
        _host_lines(ax, host, lines)
        ax.set_ylabel(label)
        ax.set_ylim(0, limit)
        ax.set_title(title, loc="left", fontsize="medium")
        time_axis(ax, span_s, ticks, label=ax is axes[-1])
        add_legend(ax)
    return fig


def _host_lines(ax: Axes, host: HostSeries, lines: Mapping[str, Sequence[float | None]]) -> None:
    for i, (who, values) in enumerate(lines.items()):
        ax.plot(
            list(host.offsets),
            _nan(values),
            color=_colour(HOST_COLOURS, who, i),
            linewidth=1.4,
            label=who,
        )


def render_charts(
    series: RequestSeries | None,
    clients: Sequence[ClientRecord],
    host: HostSeries | None,
    *,
    origin: float,
    span_s: float,
    ticks: Sequence[float],
    onset: Mapping[str, float] | None = None,
) -> list[Chart]:
    """Every chart there is data for, rendered to PNG, in the order the reports show them."""
    plans: list[tuple[str, str, str, Callable[[], Figure]]] = []
    if series is not None and not series.empty:
        plans += [
            (
                "rate",
                "Request rate",
                "Requests per second by operation; dotted red lines are burst ticks.",
                lambda: rate_chart(series, span_s, ticks),
            ),
            (
                "latency",
                "Latency over time",
                "p50 / p95 / p99 of the total time per request, per time bucket and operation.",
                lambda: latency_chart(series, span_s, ticks),
            ),
            (
                "status",
                "Status codes over time",
                "Responses per second by status; 'transport' is no complete upstream response.",
                lambda: status_chart(series, span_s, ticks),
            ),
            (
                "latency-distribution",
                "Latency distribution",
                "Share of each operation's requests by latency (log-spaced bins).",
                lambda: distribution_chart(series),
            ),
        ]
    if clients:
        plans.append(
            (
                "clients",
                "Client runs",
                "Each run at its intended start: client process wall time, launch lag, and "
                "onset (first request at the index); dotted red lines are burst ticks.",
                lambda: clients_chart(clients, origin, span_s, ticks, onset),
            )
        )
    if host is not None and not host.empty:
        plans.append(
            (
                "host",
                "Generator host, proxy and target",
                "CPU and memory sampled every second (host.jsonl).",
                lambda: host_chart(host, span_s, ticks),
            )
        )
    return [
        Chart(
            key=key, title=title, filename=f"chart-{key}.png", caption=caption, png=to_png(draw())
        )
        for key, title, caption, draw in plans
    ]

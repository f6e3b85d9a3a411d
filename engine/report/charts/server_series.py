"""The server side of a run against AWS: CloudWatch series on the run's own time axis.

One panel per group of series that share a unit (ECS utilisation, EFS credits, EFS I/O, ALB
latency, ALB counts, target health), each drawn as steps over its periods, with the same m:ss
axis, span and burst ticks as the latency charts above it, so a p99 spike can be read against
the container's memory or the file system's credits at that minute.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from pipstorm.engine.report.charts.draw import Chart, add_legend, panel_figure, time_axis, to_png
from pipstorm.infra.aws.metric_data import CloudWatchData

CHART_KEY = "cloudwatch"
#: (title, series keys, y label, factor applied to the values, y upper limit or None)
PANELS: tuple[tuple[str, tuple[str, ...], str, float, float | None], ...] = (
    ("ECS service: CPU and memory, % of reservation", ("ecs_cpu", "ecs_memory"), "%", 1.0, None),
    ("EFS: burst credit balance", ("efs_burst_credits",), "GiB", 1 / 2**30, None),
    ("EFS: % of the I/O limit", ("efs_percent_io_limit",), "%", 1.0, None),
    ("EFS: client connections", ("efs_client_connections",), "connections", 1.0, None),
    ("ALB: target response time", ("alb_target_response_time",), "ms", 1000.0, None),
    ("ALB: requests and target 5xx per period", ("alb_request_count", "alb_target_5xx"),
     "per period", 1.0, None),
    ("ALB: unhealthy targets", ("alb_unhealthy_hosts",), "targets", 1.0, None),
)  # fmt: skip
COLOURS = {
    "ecs_cpu": "#1f77b4",
    "ecs_memory": "#9467bd",
    "alb_request_count": "#2ca02c",
    "alb_target_5xx": "#d62728",
}


def cloudwatch_chart(
    data: CloudWatchData, origin: float, span_s: float, ticks: Sequence[float]
) -> Figure | None:
    """The panels that have datapoints (None when no series has any)."""
    series = {s.key: s for s in data.series if s.points}
    panels = [panel for panel in PANELS if any(key in series for key in panel[1])]
    if not panels:
        return None
    fig = panel_figure(len(panels), 2.0)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, keys, label, factor, top) in zip(axes, panels, strict=True):
        for key in keys:
            if key not in series:
                continue
            points = series[key].points
            # A datapoint covers its period from its timestamp: a step that holds to the next.
            offsets = [ts - origin for ts, _ in points] + [
                points[-1][0] - origin + data.window.period
            ]
            values = [value * factor for _, value in points]
            ax.step(
                offsets,
                [*values, values[-1]],
                where="post",
                linewidth=1.6,
                color=COLOURS.get(key),
                label=f"{series[key].name} ({series[key].stat})",
            )
        ax.set_ylim(bottom=0, top=top)
        ax.set_ylabel(label)
        ax.set_title(title, loc="left", fontsize="medium")
        time_axis(ax, span_s, ticks, label=ax is axes[-1])
        add_legend(ax)
    return fig


def cloudwatch_charts(
    data: CloudWatchData | None, origin: float, span_s: float, ticks: Sequence[float]
) -> list[Chart]:
    """The CloudWatch chart as a report ``Chart`` (an empty list when there is nothing to draw)."""
    if data is None:
        return []
    fig = cloudwatch_chart(data, origin, span_s, ticks)
    if fig is None:
        return []
    return [
        Chart(
            key=CHART_KEY,
            title="Server side (CloudWatch)",
            caption=(
                f"The stack's CloudWatch series, one step per {data.window.period} s period, "
                "on the run's time axis; dotted red lines are burst ticks."
            ),
            filename=f"chart-{CHART_KEY}.png",
            png=to_png(fig),
        )
    ]

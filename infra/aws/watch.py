"""``pipstorm watch``: the seed's second-terminal CloudWatch loops, as one live table.

The seed ran ``aws cloudwatch get-metric-statistics`` for ECS memory and EFS burst credits over
the last ten minutes, by hand, during a test. This prints all nine series the same way every
``interval`` seconds until stopped: the latest values of each, oldest first, so a trend shows.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, TextIO

from pipstorm.infra.aws.metric_data import CloudWatchData, fetch_metrics
from pipstorm.infra.aws.metrics import DEFAULT_PERIOD_S, METRICS, MetricWindow
from pipstorm.infra.aws.session import AwsAccessError, aws_session
from pipstorm.infra.aws.stack import StackDimensions

if TYPE_CHECKING:
    import boto3

DEFAULT_INTERVAL_S: Final = 30.0
DEFAULT_LOOKBACK_S: Final = 600.0  # the seed's "10 minutes ago"
VALUES_SHOWN: Final = 6
SESSION_MAX_AGE_S: Final = 45 * 60.0  # assumed-role credentials last an hour: renew before


def watch_stack(
    dimensions: StackDimensions,
    *,
    region: str | None,
    out: TextIO,
    role_arn: str | None = None,
    environ: Mapping[str, str] | None = None,
    interval: float = DEFAULT_INTERVAL_S,
    lookback: float = DEFAULT_LOOKBACK_S,
    period: int = DEFAULT_PERIOD_S,
    stop: threading.Event | None = None,
    max_ticks: int | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Print the stack's series every ``interval`` s until ``stop`` is set; the ticks printed."""
    stop = stop or threading.Event()
    session: boto3.Session | None = None
    session_born = 0.0
    ticks = 0
    while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
        now = clock()
        if session is None or now - session_born > SESSION_MAX_AGE_S:
            try:
                session = aws_session(region, role_arn=role_arn, environ=environ)
                session_born = now
            except AwsAccessError:
                session = None  # fetch_metrics reports why, and the next tick tries again
        window = MetricWindow.around(now - lookback, now, period)
        data = fetch_metrics(
            dimensions, window, region=region, role_arn=role_arn, session=session, environ=environ
        )
        out.write(render_tick(data, now))
        out.flush()
        ticks += 1
        if max_ticks is not None and ticks >= max_ticks:
            break
        stop.wait(interval)
    return ticks


def render_tick(data: CloudWatchData, now: float) -> str:
    """One block of text: a heading, then one line per series (values or why it is missing)."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%H:%M:%S")
    start = dt.datetime.fromtimestamp(data.window.start, dt.UTC).strftime("%H:%M")
    end = dt.datetime.fromtimestamp(data.window.end, dt.UTC).strftime("%H:%M")
    lines = [
        f"{stamp} UTC  {data.region or '?'}  {start}-{end} UTC, {data.window.period} s periods"
    ]
    series = {item.key: item for item in data.series}
    missing = {item.key: item.reason for item in data.missing}
    for spec in METRICS:
        head = f"  {spec.key:<26}"
        if spec.key in series:
            points = series[spec.key].points[-VALUES_SHOWN:]
            values = "  ".join(format_value(value, spec.unit) for _, value in points)
            last = dt.datetime.fromtimestamp(points[-1][0], dt.UTC).strftime("%H:%M")
            lines.append(f"{head}{values}  (latest {last}, {spec.stat})")
        elif spec.key in missing:
            lines.append(f"{head}-- {missing[spec.key]}")
    return "\n".join(lines) + "\n\n"


def format_value(value: float, unit: str) -> str:
    """Compact: percentages to 0.1, seconds to ms, bytes with a binary prefix, counts whole."""
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "s":
        return f"{value * 1000:.0f}ms"
    if unit == "bytes":
        size = value
        for prefix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(size) < 1024 or prefix == "TiB":
                return f"{size:.1f}{prefix}"
            size /= 1024
    return f"{value:.0f}"

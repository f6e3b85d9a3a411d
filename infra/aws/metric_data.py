"""Fetch the server-side series of one run window with a single GetMetricData conversation.

Never raises for AWS's sake: without credentials, region, permission or a dimension the result
lists each missing series with the reason, because a load run that succeeded must not fail on
its monitoring, and a report must say why a chart is absent rather than show nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pipstorm.infra.aws.metrics import METRICS, MetricSpec, MetricWindow
from pipstorm.infra.aws.session import (
    AwsAccessError,
    aws_session,
    botocore_error_text,
    client_config,
    client_error_text,
    is_access_denied,
)
from pipstorm.infra.aws.stack import StackDimensions

if TYPE_CHECKING:
    import boto3

MAX_QUERIES_PER_CALL: Final = 500  # GetMetricData's limit; nine series fit in one call


@dataclass(frozen=True)
class Series:
    """One metric's datapoints in the window: (epoch seconds of the period start, value)."""

    key: str
    namespace: str
    name: str
    stat: str
    unit: str
    points: tuple[tuple[float, float], ...]

    @classmethod
    def of(cls, spec: MetricSpec, points: Sequence[tuple[float, float]]) -> Series:
        """A series for ``spec`` with its points sorted by time."""
        return cls(spec.key, spec.namespace, spec.name, spec.stat, spec.unit, tuple(sorted(points)))


@dataclass(frozen=True)
class MissingSeries:
    """A series that could not be had, and why (one line, no secret)."""

    key: str
    reason: str


@dataclass(frozen=True)
class CloudWatchData:
    """What CloudWatch said about one window: series with points, and the ones missing."""

    window: MetricWindow
    region: str | None
    series: tuple[Series, ...] = ()
    missing: tuple[MissingSeries, ...] = ()
    fetched_at: float = 0.0

    def missing_summary(self) -> str | None:
        """One line naming the missing series grouped by reason, or None when none is missing."""
        if not self.missing:
            return None
        by_reason: dict[str, list[str]] = {}
        for item in self.missing:
            by_reason.setdefault(item.reason, []).append(item.key)
        parts = [f"{', '.join(keys)}: {reason}" for reason, keys in by_reason.items()]
        return "CloudWatch series missing: " + "; ".join(parts)


def fetch_metrics(
    dimensions: StackDimensions,
    window: MetricWindow,
    *,
    region: str | None,
    role_arn: str | None = None,
    session: boto3.Session | None = None,
    environ: Mapping[str, str] | None = None,
    metrics: Sequence[MetricSpec] = METRICS,
) -> CloudWatchData:
    """The window's datapoints of ``metrics`` for a stack; missing ones say why."""
    now = dt.datetime.now(dt.UTC).timestamp()
    askable: list[MetricSpec] = []
    missing: list[MissingSeries] = []
    for spec in metrics:
        absent = [
            field_name for _, field_name in spec.dimensions if not dimensions.value(field_name)
        ]
        if absent:
            missing.append(MissingSeries(spec.key, f"stack output {', '.join(absent)} unknown"))
        else:
            askable.append(spec)

    def _all_missing(reason: str) -> CloudWatchData:
        lost = tuple(MissingSeries(spec.key, reason) for spec in askable)
        return CloudWatchData(window, region, (), tuple(missing) + lost, now)

    if not askable:
        return CloudWatchData(window, region, (), tuple(missing), now)
    try:
        if session is None:
            session = aws_session(region, role_arn=role_arn, environ=environ)
        raw = _get_metric_data(session, askable, dimensions, window)
    except AwsAccessError as exc:
        return _all_missing(str(exc))
    except Exception as exc:  # any botocore failure is a missing series, never a failed run
        return _all_missing(_describe(exc))
    series: list[Series] = []
    for spec in askable:
        status, points = raw.get(spec.key, ("Missing", []))
        if status == "Forbidden":
            missing.append(MissingSeries(spec.key, "forbidden by CloudWatch"))
        elif status == "InternalError":
            missing.append(MissingSeries(spec.key, "CloudWatch internal error"))
        elif not points:
            missing.append(MissingSeries(spec.key, "no datapoints in the window"))
        else:
            series.append(Series.of(spec, points))
    return CloudWatchData(window, region, tuple(series), tuple(missing), now)


def _get_metric_data(
    session: boto3.Session,
    specs: Sequence[MetricSpec],
    dimensions: StackDimensions,
    window: MetricWindow,
) -> dict[str, tuple[str, list[tuple[float, float]]]]:
    """Query id -> (status code, points), following NextToken to the end."""
    client: Any = session.client("cloudwatch", config=client_config())
    queries = [
        {
            "Id": spec.key,
            "MetricStat": {
                "Metric": {
                    "Namespace": spec.namespace,
                    "MetricName": spec.name,
                    "Dimensions": [
                        {"Name": name, "Value": dimensions.value(field_name)}
                        for name, field_name in spec.dimensions
                    ],
                },
                "Period": window.period,
                "Stat": spec.stat,
            },
            "ReturnData": True,
        }
        for spec in specs
    ]
    results: dict[str, tuple[str, list[tuple[float, float]]]] = {}
    for offset in range(0, len(queries), MAX_QUERIES_PER_CALL):
        request: dict[str, Any] = {
            "MetricDataQueries": queries[offset : offset + MAX_QUERIES_PER_CALL],
            "StartTime": dt.datetime.fromtimestamp(window.start, dt.UTC),
            "EndTime": dt.datetime.fromtimestamp(window.end, dt.UTC),
            "ScanBy": "TimestampAscending",
        }
        while True:
            answer = client.get_metric_data(**request)
            for result in answer.get("MetricDataResults", []):
                status, points = results.get(result["Id"], ("Complete", []))
                points.extend(
                    (stamp.timestamp(), float(value))
                    for stamp, value in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=False
                    )
                )
                code = str(result.get("StatusCode", "Complete"))
                results[result["Id"]] = (code if code != "Complete" else status, points)
            token = answer.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
    return results


def _describe(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        text = client_error_text(exc)
        if is_access_denied(exc):
            return f"no permission for cloudwatch:GetMetricData ({text})"
        return f"GetMetricData failed ({text})"
    return botocore_error_text(exc)

"""The CloudWatch side of a run, reduced to what reports and comparisons show.

Pure functions over ``RunData.cloudwatch`` (``pipstorm.infra.aws.CloudWatchData``): per series its
statistic's minimum, mean, maximum and last value over the window, and the one line that names
what is missing and why. Kept apart from the drawing
(``pipstorm.engine.report.charts.server_series``) and the fetching
(``pipstorm.engine.run.target.cloudwatch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipstorm.infra.aws.metric_data import CloudWatchData, Series
from pipstorm.infra.aws.metrics import METRIC_KEYS

#: Said with any missing series: CloudWatch publishes a period's datapoint minutes after it.
LATE_DATA_HINT = (
    "CloudWatch publishes datapoints a few minutes late: `pipstorm report DIR --cloudwatch` "
    "fetches them again"
)


@dataclass(frozen=True)
class SeriesSummary:
    """One series over the run's window: its statistic's extremes, mean and last value."""

    key: str
    namespace: str
    name: str
    stat: str
    unit: str
    points: int
    minimum: float
    mean: float
    maximum: float
    last: float
    total: float  # the sum over the periods: what a Sum statistic (requests, 5xx) adds up to

    def to_dict(self) -> dict[str, Any]:
        """The series' entry under ``cloudwatch.series`` in report.json."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "stat": self.stat,
            "unit": self.unit,
            "points": self.points,
            "min": self.minimum,
            "mean": self.mean,
            "max": self.maximum,
            "last": self.last,
            "total": self.total,
        }


def summarize_series(series: Series) -> SeriesSummary:
    """Extremes, mean and last value of one series (it has at least one point)."""
    values = [value for _, value in series.points]
    return SeriesSummary(
        key=series.key,
        namespace=series.namespace,
        name=series.name,
        stat=series.stat,
        unit=series.unit,
        points=len(values),
        minimum=min(values),
        mean=sum(values) / len(values),
        maximum=max(values),
        last=values[-1],
        total=sum(values),
    )


def summaries(data: CloudWatchData) -> list[SeriesSummary]:
    """Every series with points, in the catalogue's order (unknown keys last, by name)."""
    order = {key: index for index, key in enumerate(METRIC_KEYS)}
    found = sorted(
        (s for s in data.series if s.points), key=lambda s: (order.get(s.key, len(order)), s.key)
    )
    return [summarize_series(s) for s in found]


def missing_note(data: CloudWatchData) -> str | None:
    """The report's one line on missing series (why each is missing), or None."""
    summary = data.missing_summary()
    if summary is None:
        return None
    late = any(item.reason == "no datapoints in the window" for item in data.missing)
    return f"{summary}." + (f" {LATE_DATA_HINT}." if late else "")


def cloudwatch_section(data: CloudWatchData | None) -> dict[str, Any] | None:
    """report.json's ``cloudwatch``: None for a run without CloudWatch data."""
    if data is None:
        return None
    return {
        "region": data.region,
        "window": {
            "start": data.window.start,
            "end": data.window.end,
            "period": data.window.period,
        },
        "fetched_at": data.fetched_at,
        "series": {s.key: s.to_dict() for s in summaries(data)},
        "missing": {item.key: item.reason for item in data.missing},
    }

"""``cloudwatch.jsonl``: the CloudWatch side of a run, one JSON line per fact.

Three kinds of line: one ``window`` (what was asked: range, period, region, when), one
``point`` per datapoint, one ``missing`` per series that could not be had and why. A datapoint
per line keeps the file greppable and lets a later fetch (``pipstorm report DIR --cloudwatch``)
replace it whole. The file name is the results folder's (``pipstorm.engine.rundir.files``). Written
atomically (temp file + ``os.replace``): a report never reads half.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Final

from pipstorm.infra.aws.metric_data import CloudWatchData, MissingSeries, Series
from pipstorm.infra.aws.metrics import MetricWindow
from pipstorm.infra.errors import InfraError

SCHEMA: Final = 1


class CloudWatchLogError(InfraError, ValueError):
    """A cloudwatch.jsonl that is not what this module writes (one line saying where)."""


def write_cloudwatch(path: Path, data: CloudWatchData) -> None:
    """Write ``data`` to ``path`` atomically, 0644 like the run's other records."""
    lines: list[dict[str, Any]] = [
        {
            "kind": "window",
            "schema": SCHEMA,
            "start": data.window.start,
            "end": data.window.end,
            "period": data.window.period,
            "region": data.region,
            "fetched_at": data.fetched_at,
        }
    ]
    for series in data.series:
        lines.extend(
            {
                "kind": "point",
                "metric": series.key,
                "namespace": series.namespace,
                "name": series.name,
                "stat": series.stat,
                "unit": series.unit,
                "ts": ts,
                "value": value,
            }
            for ts, value in series.points
        )
    lines.extend({"kind": "missing", "metric": m.key, "reason": m.reason} for m in data.missing)
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    fd, temp = tempfile.mkstemp(prefix=".cloudwatch-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        Path(temp).chmod(0o644)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_cloudwatch(path: Path) -> CloudWatchData | None:
    """The data ``write_cloudwatch`` wrote, or None when the run has no such file."""
    if not path.exists():
        return None
    window: MetricWindow | None = None
    region: str | None = None
    fetched_at = 0.0
    heads: dict[str, tuple[str, str, str, str]] = {}
    points: dict[str, list[tuple[float, float]]] = {}
    missing: list[MissingSeries] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = item["kind"]
            if kind == "window":
                window = MetricWindow(float(item["start"]), float(item["end"]), int(item["period"]))
                region = item.get("region")
                fetched_at = float(item.get("fetched_at") or 0.0)
            elif kind == "point":
                key = str(item["metric"])
                heads[key] = (item["namespace"], item["name"], item["stat"], item["unit"])
                points.setdefault(key, []).append((float(item["ts"]), float(item["value"])))
            elif kind == "missing":
                missing.append(MissingSeries(str(item["metric"]), str(item["reason"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise CloudWatchLogError(f"{path}:{number}: not a cloudwatch record ({exc})") from None
    if window is None:
        raise CloudWatchLogError(f"{path}: no window line")
    series = tuple(
        Series(key, *heads[key], points=tuple(sorted(values))) for key, values in points.items()
    )
    return CloudWatchData(window, region, series, tuple(missing), fetched_at)

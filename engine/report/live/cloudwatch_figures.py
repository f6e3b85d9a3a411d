"""The live page's CloudWatch side of a run against an AWS stack (``cloudwatch.jsonl``).

A run against a Terraform stack fetches the stack's CloudWatch series for its window once the
load has ended, before the report is written (``pipstorm.engine.run.execute``): CloudWatch
publishes by the minute and minutes late, so sampling it during the run would show nothing yet
and cost API calls. The page shows them as soon as the file is there (a browser watching to the
end sees them beside the verdict; a late one sees them at once): the series in percent on one
chart, every series' last and highest value in a table, and why a series is missing.

The file is written whole and atomically (``pipstorm.infra.aws.cloudwatch_log``), so it is read
again only when it changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipstorm.engine.rundir.files import CLOUDWATCH_FILE
from pipstorm.infra.aws.cloudwatch_log import CloudWatchLogError, read_cloudwatch
from pipstorm.infra.aws.metric_data import CloudWatchData

#: The unit of the series drawn together on the page's chart.
PERCENT = "%"


class CloudWatchFigures:
    """``cloudwatch.jsonl`` of one run folder as the page shows it, read when it changes."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CLOUDWATCH_FILE
        self._seen: tuple[int, int] | None = None
        self._state: dict[str, Any] | None = None

    def state(self, started: float | None) -> dict[str, Any] | None:
        """None without the file; else ``chart`` (percent series on one axis), ``rows`` and
        ``missing``."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            try:
                data = read_cloudwatch(self.path)
            except (CloudWatchLogError, OSError) as exc:
                return {"chart": None, "rows": [], "missing": [["cloudwatch.jsonl", str(exc)]]}
            self._seen = seen
            self._state = None if data is None else figures(data, started)
        return self._state


def figures(data: CloudWatchData, started: float | None) -> dict[str, Any]:
    """The page's view of ``data``: times in seconds into the run (``started``)."""
    origin = started if started is not None else data.window.start
    percent = [s for s in data.series if s.unit == PERCENT]
    stamps = sorted({ts for s in percent for ts, _ in s.points})
    chart = {
        "t": [round(ts - origin, 1) for ts in stamps],
        "labels": [f"{s.key} ({s.stat})" for s in percent],
        "values": [[dict(s.points).get(ts) for ts in stamps] for s in percent],
    }
    rows = [
        [
            s.key,
            f"{s.namespace} {s.name}",
            s.stat,
            s.unit,
            str(len(s.points)),
            _fmt(max((v for _, v in s.points), default=None)),
            _fmt(s.points[-1][1] if s.points else None),
        ]
        for s in data.series
    ]
    return {
        "chart": chart if percent else None,
        "rows": rows,
        "missing": [[m.key, m.reason] for m in data.missing],
        "period_s": data.window.period,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"

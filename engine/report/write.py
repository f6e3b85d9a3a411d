"""Writing a run's reports: ``report.json``, the chart PNGs, ``report.md`` and ``report.html``.

Each file is replaced atomically; the folder is read once (``RunData``) for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipstorm.engine.report.markdown import render_markdown
from pipstorm.engine.report.model import (
    REPORT_HTML,
    REPORT_JSON,
    REPORT_MD,
    Report,
    ReportError,
    build_report,
)
from pipstorm.engine.rundir.files import write_json_atomic, write_text_atomic


def write_reports(run_dir: Path, thresholds: Mapping[str, float] | None = None) -> Report:
    """Build the report and write ``report.json``, the chart PNGs, ``report.md`` and the
    self-contained ``report.html`` (each atomically)."""
    # Imported here: matplotlib is slow to import and only reports need it, not every command.
    from pipstorm.engine.report.charts.files import build_charts, write_chart_files
    from pipstorm.engine.report.html import render_html

    report = build_report(run_dir, thresholds)
    try:
        write_json_atomic(run_dir / REPORT_JSON, report.to_dict())
        charts = build_charts(report)
        write_chart_files(run_dir, charts)
        write_text_atomic(run_dir / REPORT_MD, render_markdown(report, charts.links))
        write_text_atomic(run_dir / REPORT_HTML, render_html(report, charts))
    except OSError as exc:
        raise ReportError(f"{run_dir}: cannot write the report ({exc})") from None
    return report

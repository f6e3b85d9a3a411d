"""``report.html``: one self-contained page a person would rather look at than ``report.md``.

Self-contained means it opens offline and can be mailed or archived alone: the CSS is inline,
the charts are the report's PNGs as ``data:`` URIs, and nothing is fetched from anywhere (no
CDN, no script). The numbers come from the same :class:`engine.report.model.Report` as report.md and
are formatted by the same helpers, so the two never disagree.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from engine.analysis.client_usage import USAGE_HEADERS, usage_rows
from engine.analysis.saturation import warning_lines
from engine.report.chart_files import ReportCharts
from engine.report.markdown import (
    CLIENT_HEADERS,
    NONE,
    OP_HEADERS,
    _client_row,
    _operation_rows,
    _reason,
    _run_lines,
    _threshold_rows,
    _verdict_line,
)

if TYPE_CHECKING:
    from engine.report.model import Report

REPORT_HTML = "report.html"

CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1d2329; background: #f4f6f8; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 40px; }
header.verdict { padding: 18px 24px; color: #fff; }
header.pass { background: #1e7b34; }
header.fail { background: #b3261e; }
header h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; }
header .line { font-size: 26px; font-weight: 700; letter-spacing: .01em; }
section { background: #fff; border: 1px solid #dde2e7; border-radius: 6px; padding: 12px 18px;
  margin: 16px 0; }
h2 { font-size: 17px; margin: 4px 0 10px; }
ul.facts { margin: 0; padding-left: 18px; }
code { background: #eef1f4; padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 4px 0 8px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e6e9ec; text-align: right;
  white-space: nowrap; font-size: 13px; }
th { background: #f0f2f5; font-weight: 600; }
th:first-child, td:first-child, .text { text-align: left; }
td.text { white-space: normal; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-weight: 700;
  font-size: 12px; color: #fff; }
.badge.pass { background: #1e7b34; }
.badge.fail { background: #b3261e; }
.notes { border-left: 5px solid #e0a100; }
.generator { border-left: 6px solid #b3261e; background: #fff4f2; }
.generator h2 { color: #b3261e; }
.notes li { margin: 2px 0; }
figure { margin: 0 0 18px; }
figure img { width: 100%; height: auto; display: block; border: 1px solid #eef0f2; }
figcaption { color: #4a5561; font-size: 13px; margin-top: 4px; }
nav a { margin-right: 14px; }
.muted { color: #66717c; }
.scroll { overflow-x: auto; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _inline_md(text: str) -> str:
    """The little Markdown the shared run lines use (``code``, **bold**) as HTML."""
    out = _e(text)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns: Sequence[int] = ()
) -> str:
    head = "".join(
        f'<th class="text">{_e(h)}</th>' if i in text_columns else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{cell}</td>' if i in text_columns else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _section(title: str, body: str, anchor: str = "", css: str = "") -> str:
    ident = f' id="{_e(anchor)}"' if anchor else ""
    cls = f' class="{_e(css)}"' if css else ""
    return f"<section{ident}{cls}><h2>{_e(title)}</h2>{body}</section>"


def _thresholds(report: Report) -> str:
    if not report.thresholds:
        return "<p>No thresholds set.</p>"
    rows = []
    for key, metric, limit, measured, verdict in _threshold_rows(report.thresholds, md=False):
        badge = "pass" if verdict == "PASS" else "fail"
        rows.append(
            [
                _e(key),
                _e(metric),
                _e(limit),
                _e(measured),
                f'<span class="badge {badge}">{_e(verdict)}</span>',
            ]
        )
    return _table(("key", "metric", "threshold", "measured", "result"), rows, (1,))


def _charts(charts: ReportCharts) -> tuple[str, str]:
    """(navigation links, figures) of every chart."""
    nav = " ".join(f'<a href="#chart-{_e(c.key)}">{_e(c.title)}</a>' for c in charts.charts)
    figures = []
    for chart in charts.charts:
        data = base64.b64encode(chart.png).decode("ascii")
        figures.append(
            f'<figure id="chart-{_e(chart.key)}">'
            f'<img alt="{_e(chart.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><strong>{_e(chart.title)}.</strong> {_e(chart.caption)}</figcaption>"
            "</figure>"
        )
    return nav, "".join(figures)


def _host_note(charts: ReportCharts) -> str:
    if charts.error is not None:
        return f'<p class="muted">The charts could not be drawn: {_e(charts.error)}</p>'
    if charts.host_sampled:
        return ""
    why = (
        "host.jsonl has no samples with known keys"
        if charts.host_file_present
        else "no host.jsonl in the run folder"
    )
    return (
        f'<p class="muted" id="no-host-samples">No host samples ({why}): CPU and memory of '
        "the generator host, the proxy and the target are not charted.</p>"
    )


def _details(report: Report) -> str:
    stats = report.stats
    parts = [
        _section(
            "Requests by operation (latency: total time per request)",
            _table(OP_HEADERS, ([_e(c) for c in row] for row in _operation_rows(report)))
            if stats.operations
            else "<p>No requests were recorded.</p>",
            "operations",
        ),
        _section(
            "Status codes",
            _table(
                ("status", "count"),
                ([_e(k), _e(v)] for k, v in stats.requests.status_code_counts.items()),
            )
            if stats.requests.status_code_counts
            else "<p>None.</p>",
            "status-codes",
        ),
    ]
    if stats.clients.all.count:
        rows = [_client_row(k, g) for k, g in stats.clients.by_client.items()]
        if len(rows) > 1:
            rows.append(_client_row("all", stats.clients.all))
        body = (
            '<p class="muted">client: the client process, launch to end; done: intended start '
            "to end; lag: how late the client launched.</p>"
            + _table(CLIENT_HEADERS, ([_e(c) for c in row] for row in rows))
        )
    else:
        body = "<p>No client runs were recorded.</p>"
    parts.append(_section("Client runs", body, "client-runs"))
    if report.client_kinds:
        parts.append(
            _section(
                "Client kinds: versions, user agents seen by the index, requests per run",
                _table(
                    USAGE_HEADERS,
                    ([_e(c) for c in row] for row in usage_rows(report.client_kinds)),
                    (2, 3),
                ),
                "client-kinds",
            )
        )
    if report.failed_runs:
        rows = [
            [
                _e(r.run_id),
                _e(r.client),
                _e(f"{r.project} {r.version or ''}".strip()),
                _e(r.outcome),
                _e(NONE if r.exit_code is None else r.exit_code),
                _e(_reason(r.error, r.stderr_tail)),
            ]
            for r in report.failed_runs
        ]
        parts.append(
            _section(
                f"Failed client runs (first {len(rows)} of {stats.clients.all.failed_count})",
                _table(("run", "client", "job", "outcome", "exit", "reason"), rows, (5,)),
                "failed-runs",
            )
        )
    return "".join(parts)


def _generator_warning(report: Report) -> str:
    """engine.analysis.saturation's warning, right under the verdict: the figures may be the
    generator's, not the index's."""
    lines = warning_lines(report.generator)
    if not lines:
        return ""
    head, *middle, advice = lines
    items = "".join(f"<li>{_e(line.strip().removeprefix('- '))}</li>" for line in middle[1:])
    body = (
        f"<p>{_e(middle[0]) if middle else ''}</p><ul>{items}</ul><p>{_e(advice)}</p>"
        if middle
        else f"<p>{_e(advice)}</p>"
    )
    return _section(head.removeprefix("WARNING: "), body, "generator", "generator")


def render_html(report: Report, charts: ReportCharts) -> str:
    """The whole page: verdict, facts, thresholds, notes, charts, then the detail tables."""
    verdict = report.verdict
    nav, figures = _charts(charts)
    facts = "".join(
        f"<li>{_inline_md(line.removeprefix('- '))}</li>" for line in _run_lines(report)
    )
    notes = (
        _section(
            "Notes",
            "<ul>" + "".join(f"<li>{_inline_md(n)}</li>" for n in report.notes) + "</ul>",
            "notes",
            "notes",
        )
        if report.notes
        else ""
    )
    chart_body = (
        (f"<nav>{nav}</nav>" if nav else "")
        + (figures or "<p>Nothing was recorded to chart.</p>")
        + _host_note(charts)
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>pipstorm {_e(verdict.upper())}: {_e(report.profile_name)}</title>"
        f"<style>{CSS}</style></head><body>"
        f'<header class="verdict {verdict}" id="verdict">'
        f"<h1>pipstorm report: {_e(report.profile_name)}</h1>"
        f'<div class="line">{_e(_verdict_line(report))}</div></header>'
        "<main>"
        + _generator_warning(report)
        + _section("Run", f'<ul class="facts">{facts}</ul>', "run")
        + _section("Thresholds", _thresholds(report), "thresholds")
        + notes
        + _section("Charts", chart_body, "charts")
        + _details(report)
        + f'<p class="muted">Generated {_e(report.generated_at)} from '
        f"<code>{_e(report.run_dir)}</code>.</p>"
        "</main></body></html>\n"
    )

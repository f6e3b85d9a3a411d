"""``report.html``: one self-contained page a person would rather look at than ``report.md``.

Self-contained means it opens offline and can be mailed or archived alone: the CSS is inline,
the charts are the report's PNGs as ``data:`` URIs, and nothing is fetched from anywhere (no
CDN, no script). The page is the template ``templates/report.html`` rendered by Jinja2 with
autoescaping (as locust renders its report), so no value can become markup; the cells come from
``pipstorm.engine.report.rows``, the same builders as report.md, so the two never disagree.
"""

from __future__ import annotations

import base64
from functools import cache

import jinja2

from pipstorm.engine.report.banner import verdict_line, verdict_reasons
from pipstorm.engine.report.charts.files import ReportCharts
from pipstorm.engine.report.model import Report
from pipstorm.engine.report.rows import (
    CLIENT_HEADERS,
    CLIENT_NOTE,
    CLOUDWATCH_HEADERS,
    CLOUDWATCH_NOTE,
    FAILED_HEADERS,
    ONSET_HEADERS,
    ONSET_NOTE,
    OP_HEADERS,
    SHARD_HEADERS,
    SHARD_NOTE,
    USAGE_HEADERS,
    cause_lines,
    client_rows,
    cloudwatch_rows,
    failed_rows,
    generator_warning,
    onset_rows,
    operation_rows,
    run_facts,
    shard_table_rows,
    status_rows,
    threshold_rows,
    transport_rows,
    usage_rows,
)
from pipstorm.engine.report.target_rows import target_rows

TEMPLATE = "report.html"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipstorm.engine.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests, not a reader
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report, charts: ReportCharts) -> str:
    """The whole page: verdict, facts, thresholds, notes, charts, then the detail tables."""
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            report=report,
            verdict=verdict_line(report),
            reasons=verdict_reasons(report),
            causes=cause_lines(report),
            warning=generator_warning(report),
            facts=run_facts(report),
            target=target_rows(report),
            thresholds=threshold_rows(report),
            charts=charts,
            images={c.key: base64.b64encode(c.png).decode("ascii") for c in charts.charts},
            op_headers=OP_HEADERS,
            operations=operation_rows(report),
            statuses=status_rows(report),
            cloudwatch_headers=CLOUDWATCH_HEADERS,
            cloudwatch_note=CLOUDWATCH_NOTE,
            cloudwatch=cloudwatch_rows(report),
            transport=transport_rows(report),
            client_note=CLIENT_NOTE,
            client_headers=CLIENT_HEADERS,
            clients=client_rows(report),
            onset_headers=ONSET_HEADERS,
            onset_note=ONSET_NOTE,
            onset=onset_rows(report),
            shard_headers=SHARD_HEADERS,
            shard_note=SHARD_NOTE,
            shards=shard_table_rows(report),
            usage_headers=USAGE_HEADERS,
            usage=usage_rows(report.client_kinds),
            failed_headers=FAILED_HEADERS,
            failed=failed_rows(report),
            failed_total=report.stats.clients.all.failed_count,
        )
    )

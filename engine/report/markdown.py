"""``report.md``: the report as Markdown, from the rows every rendering shares
(``pipstorm.engine.report.rows``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate

from pipstorm.engine.report.banner import verdict_line, verdict_reasons
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
    THRESHOLD_HEADERS,
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


def table(
    rows: Iterable[Sequence[object]],
    headers: Sequence[str],
    fmt: str = "github",
    align: Sequence[str] | None = None,
) -> str:
    """A table; by default the first column left-aligned, the (numeric) others right-aligned."""
    if align is None:
        align = ("left", *("right",) * (len(headers) - 1))
    return tabulate(
        list(rows), headers=list(headers), tablefmt=fmt, disable_numparse=True, colalign=align
    )


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (tabulate escapes nothing)."""
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _cells(rows: Iterable[Sequence[str]]) -> list[list[str]]:
    return [[_cell(c) for c in row] for row in rows]


def _warning(report: Report) -> list[str]:
    """A blockquote right under the verdict when the generator was the bottleneck."""
    warning = generator_warning(report)
    if warning is None:
        return []
    quoted = [
        f"> **WARNING: {warning.headline}**",
        ">",
        f"> {warning.intro}",
        *(f"> - {item}" for item in warning.items),
        ">",
        f"> {warning.advice}",
    ]
    return ["\n".join(quoted)]


def _reasons(report: Report) -> list[str]:
    """Under the verdict (and its causes): why it is what it is when the generator was the
    bottleneck, and what to do."""
    lines = verdict_reasons(report)
    return ["\n".join(f"- {_cell(line)}" for line in lines)] if lines else []


def _causes(report: Report) -> list[str]:
    """Right under a failed verdict: what the target did (died, refused, stalled...)."""
    lines = cause_lines(report)
    return ["\n".join(f"- Cause: {_cell(line)}" for line in lines)] if lines else []


def _target(report: Report) -> list[str]:
    """The sized target's facts and counters, right under the run's facts."""
    rows = target_rows(report)
    if not rows:
        return []
    listed = "\n".join(f"- {label}: {_cell(text)}" for label, text in rows)
    return ["## Target sizing and its cgroup over the run", listed]


def render_markdown(report: Report, charts: Sequence[tuple[str, str]] = ()) -> str:
    """``report.md``: verdict first, then thresholds, operations, status codes, runs, charts
    (``charts``: (title, PNG file name next to report.md)), notes."""
    stats = report.stats
    facts = "\n".join(
        f"- {f.label}: " + (f"`{f.code}` " if f.code is not None else "") + f.text
        for f in run_facts(report)
    )
    parts = [
        f"# pipstorm report: {report.profile_name}",
        f"**{verdict_line(report)}**",
        *_causes(report),
        *_reasons(report),
        *_warning(report),
        facts,
        *_target(report),
        "## Thresholds",
        table(
            (
                [r.key, r.metric, r.limit, r.measured, "PASS" if r.passed else "**FAIL**"]
                for r in threshold_rows(report)
            ),
            THRESHOLD_HEADERS,
            align=("left", "left", "right", "right", "left"),
        )
        if report.thresholds
        else "No thresholds set.",
        "## Requests by operation (latency: total time per request)",
        table(operation_rows(report), OP_HEADERS)
        if stats.operations
        else "No requests were recorded.",
        "## Status codes",
        table(status_rows(report), ("status", "count")) if status_rows(report) else "None.",
    ]
    if stats.requests.transport_errors:
        parts += [
            "## Transport errors (no complete upstream response)",
            table(transport_rows(report), ("kind", "count")),
        ]
    parts.append(f"## Client runs\n\n{CLIENT_NOTE}")
    rows = client_rows(report)
    parts.append(table(rows, CLIENT_HEADERS) if rows else "No client runs were recorded.")
    onset = onset_rows(report)
    if onset:
        parts += [f"### Burst onset\n\n{ONSET_NOTE}", table(onset, ONSET_HEADERS)]
    if report.shards:
        parts += [
            f"### Shards\n\n{SHARD_NOTE}",
            table(
                shard_table_rows(report),
                SHARD_HEADERS,
                align=("right", "left", "left", *("right",) * (len(SHARD_HEADERS) - 3)),
            ),
        ]
    if report.client_kinds:
        parts += [
            "### Client kinds: versions, user agents seen by the index, requests per run",
            table(_cells(usage_rows(report.client_kinds)), USAGE_HEADERS),
        ]
    if report.failed_runs:
        shown = len(report.failed_runs)
        parts += [
            f"### Failed client runs (first {shown} of {stats.clients.all.failed_count})",
            table(_cells(failed_rows(report)), FAILED_HEADERS),
        ]
    cloudwatch = cloudwatch_rows(report)
    if cloudwatch:
        parts += [
            f"## Server side (CloudWatch)\n\n{CLOUDWATCH_NOTE}",
            table(cloudwatch, CLOUDWATCH_HEADERS, align=("left", "left", "left", *("right",) * 5)),
        ]
    if charts:
        parts += [
            "## Charts\n\nAll of them, with the tables, in one page: [report.html](report.html).",
            "\n\n".join(f"![{title}]({name})" for title, name in charts),
        ]
    if report.notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in report.notes)]
    parts.append(f"_Generated {report.generated_at} from `{report.run_dir}`._")
    return "\n\n".join(parts) + "\n"

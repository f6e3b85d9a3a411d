"""``pipstorm compare``: read runs (folders or report.json files) and render their figures side by
side, with changes against the first (the figures and deltas are
``pipstorm.engine.analysis.compare``'s)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from pipstorm.engine.analysis.compare import (
    FORMATS,
    CompareError,
    Delta,
    Metric,
    RunSummary,
    compare,
)
from pipstorm.engine.report.model import REPORT_JSON, build_report
from pipstorm.engine.rundir.files import RUN_FILE


def load_run(arg: Path) -> RunSummary:
    """A run directory or a report.json, as a :class:`RunSummary`; one-line errors."""
    if arg.is_dir():
        path = arg / REPORT_JSON
        if not path.is_file():
            if not (arg / RUN_FILE).is_file():
                raise CompareError(f"{arg}: not a pipstorm results folder (no {REPORT_JSON})")
            # no report.json yet: build one in memory
            return RunSummary(arg.name, arg, build_report(arg).to_dict())
        label = arg.name
    elif arg.is_file():
        path, label = arg, arg.parent.name or arg.name
    else:
        raise CompareError(f"{arg}: no such run folder or report.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(f"{path}: not a readable report.json ({exc})") from None
    if not isinstance(data, dict) or "verdict" not in data or "schema" not in data:
        raise CompareError(f"{path}: not a pipstorm report.json (no schema/verdict)")
    if data["schema"] != 1:
        raise CompareError(f"{path}: unsupported report schema {data['schema']!r} (reads 1)")
    return RunSummary(label, path, data)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_delta(metric: Metric, d: Delta) -> str:
    if d.change is None:
        return "-"
    if d.judgement == "same" or (d.judgement is None and d.change == 0):
        return "="
    text = (
        f"{d.change_percent:+.1f} %"
        if d.change_percent is not None
        else f"{d.change:+.{metric.digits}f}"
    )
    return f"{text} {d.judgement}" if d.judgement else text


def render(runs: Sequence[RunSummary], fmt: str) -> str:
    """The comparison as a terminal table, Markdown, or JSON."""
    if fmt not in FORMATS:
        raise CompareError(f"unknown --format {fmt!r} (one of: {', '.join(FORMATS)})")
    rows = compare(runs)
    names = [chr(ord("A") + i) if i < 26 else f"R{i}" for i in range(len(runs))]
    if fmt == "json":
        return json.dumps(
            {
                "baseline": names[0],
                "runs": [
                    {"name": n, "label": r.label, "source": str(r.source), "verdict": r.verdict}
                    for n, r in zip(names, runs, strict=True)
                ],
                "metrics": [
                    {
                        "key": m.key,
                        "label": m.label,
                        "better": m.better,
                        "values": [d.value for d in ds],
                        "change": [d.change for d in ds],
                        "change_percent": [d.change_percent for d in ds],
                        "judgement": [d.judgement for d in ds],
                    }
                    for m, ds in rows
                ],
            },
            indent=2,
            allow_nan=False,
        )
    # "reference", not "baseline": in a sizing lab "baseline" is a preset's name, and a lab of
    # `validated` alone printed "A (baseline)" above the validated deployment's figures.
    headers = ["metric", f"{names[0]} (reference)" if len(names) > 1 else names[0]]
    for n in names[1:]:
        headers += [n, f"{n} vs {names[0]}"]
    table = [["verdict", runs[0].verdict, *(c for r in runs[1:] for c in (r.verdict, ""))]]
    for metric, ds in rows:
        cells = [metric.label, _fmt(ds[0].value, metric.digits)]
        for d in ds[1:]:
            cells += [_fmt(d.value, metric.digits), _fmt_delta(metric, d)]
        table.append(cells)
    align = ["left", *(["right"] * (len(headers) - 1))]
    legend = [f"{n}: {r.source}" for n, r in zip(names, runs, strict=True)]
    body = tabulate(
        table,
        headers=headers,
        tablefmt="github" if fmt == "md" else "simple",
        disable_numparse=True,
        colalign=align,
    )
    if fmt == "md":
        legend = [f"- **{n}**: `{r.source}`" for n, r in zip(names, runs, strict=True)]
        return "\n".join(legend) + "\n\n" + body + "\n"
    return "\n".join(legend) + "\n\n" + body


def compare_paths(args: Sequence[Path], fmt: str = "table") -> str:
    """Load each argument and render the comparison; at least two runs are needed."""
    if fmt not in FORMATS:
        raise CompareError(f"unknown --format {fmt!r} (one of: {', '.join(FORMATS)})")
    if len(args) < 2:
        raise CompareError("compare needs at least two runs (results folders or report.json)")
    return render([load_run(a) for a in args], fmt)

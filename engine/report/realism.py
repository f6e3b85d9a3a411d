"""The realism comparison as ``realism.md``, ``realism.json`` and a terminal table.

Kept apart from ``pipstorm.engine.workflows.realism`` (which runs and measures) so the rendering can
be read, and tested, without running anything. Numbers are shown as measured: percentiles
unrounded until printed, ``-`` where a side has no sample.
"""

from __future__ import annotations

from collections.abc import Callable

from tabulate import tabulate

from pipstorm.engine.analysis.realism import OperationSide, Realism, Side
from pipstorm.engine.analysis.stats import Distribution
from pipstorm.engine.rundir.files import write_json_atomic, write_text_atomic
from pipstorm.engine.rundir.records import OPERATIONS

NONE = "-"
REALISM_JSON = "realism.json"
REALISM_MD = "realism.md"


def write_realism(realism: Realism) -> None:
    """Write ``realism.json`` and ``realism.md`` into the realism folder, atomically."""
    write_json_atomic(realism.dir / REALISM_JSON, realism.to_dict())
    write_text_atomic(realism.dir / REALISM_MD, render_markdown(realism))


def _dist(d: Distribution | None, fmt: str = "{:.1f}") -> str:
    if d is None:
        return NONE
    return " / ".join(fmt.format(v) for v in (d.p50, d.p95, d.p99))


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f} %"


def _mix(side: Side) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in side.clients.items()) or NONE


def _ops(realism: Realism) -> list[str]:
    seen = set(realism.synthetic.operations) | set(realism.real.operations)
    return [op for op in OPERATIONS if op in seen] + sorted(seen - set(OPERATIONS))


def summary_rows(realism: Realism) -> list[list[str]]:
    """What a client run is, side by side: one row per measure."""
    s, r = realism.synthetic, realism.real

    def row(name: str, get: Callable[[Side], str]) -> list[str]:
        return [name, get(s), get(r)]

    return [
        row("clients", _mix),
        row("client runs", lambda x: str(x.runs)),
        row("outcomes", lambda x: ", ".join(f"{k} {n}" for k, n in x.outcomes.items()) or NONE),
        row("client runs failed", lambda x: _pct(x.run_error_rate)),
        row("requests", lambda x: str(x.requests)),
        row("requests per run", lambda x: f"{x.requests_per_run:g}"),
        row("bytes per run", lambda x: f"{x.bytes_per_run:,.0f}"),
        row("Range requests per run", lambda x: f"{x.range_requests_per_run:g}"),
        row("request error rate", lambda x: _pct(x.request_error_rate)),
        row("CPU-s per run (p50 / p95 / p99)", lambda x: _dist(x.cpu_s, "{:.4f}")),
        row("run wall time s (p50 / p95 / p99)", lambda x: _dist(x.client_s, "{:.3f}")),
        row(
            "user agents (requests)",
            lambda x: ", ".join(f"{a} ({n})" for a, n in x.user_agents.items()) or NONE,
        ),
    ]


def operation_rows(
    realism: Realism, cell: Callable[[OperationSide | None], str]
) -> list[list[str]]:
    """One row per operation seen on either side, ``cell`` rendering each side's numbers."""
    return [
        [
            op,
            cell(realism.synthetic.operations.get(op)),
            cell(realism.real.operations.get(op)),
        ]
        for op in _ops(realism)
    ]


def _per_run(o: OperationSide | None) -> str:
    return "0" if o is None else f"{o.per_run:g}"


def _latency(o: OperationSide | None) -> str:
    return NONE if o is None else _dist(o.total_ms)


def _errors(o: OperationSide | None) -> str:
    return NONE if o is None else _pct(o.error_rate)


def _bytes(o: OperationSide | None) -> str:
    return "0" if o is None else f"{o.bytes:,}"


def _table(rows: list[list[str]], first: str, fmt: str) -> str:
    headers = [first, "synthetic (http)", "real clients"]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_markdown(realism: Realism) -> str:
    """``realism.md``: the summary, per-operation tables and the findings."""
    s, r = realism.synthetic, realism.real
    lines = [
        f"# Realism check: {realism.profile}",
        "",
        f"The same schedule (seed {realism.seed}) played twice against one embedded target: "
        "once by the synthetic client (the seed's redirect, listing, download over plain HTTP, "
        "in process), once by the real clients. It answers: what does a synthetic test miss?",
        "",
        f"- synthetic run: `{s.run_dir}`",
        f"- real run: `{r.run_dir}`",
    ]
    if s.interrupted or r.interrupted:
        lines.append("- **interrupted**: the comparison covers only the part that ran")
    lines += [
        "",
        "## A client run, side by side",
        "",
        _table(summary_rows(realism), "", "github"),
        "",
        "## Requests per client run, by operation",
        "",
        _table(operation_rows(realism, _per_run), "operation", "github"),
        "",
        "## Latency per operation (ms, p50 / p95 / p99)",
        "",
        _table(operation_rows(realism, _latency), "operation", "github"),
        "",
        "## Bytes and error rate per operation",
        "",
        _table(
            [
                [op, f"{_bytes(so)}; {_errors(so)}", f"{_bytes(ro)}; {_errors(ro)}"]
                for op, so, ro in (
                    (op, s.operations.get(op), r.operations.get(op)) for op in _ops(realism)
                )
            ],
            "operation",
            "github",
        ),
        "",
        "## What the synthetic test misses",
        "",
        *(f"- {finding}" for finding in realism.findings),
        "",
    ]
    return "\n".join(lines)


def terminal_summary(realism: Realism) -> str:
    """A few lines for the terminal: requests per run by operation, CPU, the findings."""
    rows = [
        *summary_rows(realism)[1:7],
        *(
            [f"{op} per run", a, b]
            for op, a, b in operation_rows(realism, _per_run)  # requests per op
        ),
        summary_rows(realism)[9],
    ]
    lines = [
        f"realism: {realism.profile} (seed {realism.seed})",
        _table(rows, "", "simple"),
        "",
        "what the synthetic test misses:",
        *(f"  - {finding}" for finding in realism.findings),
        f"reports: {realism.dir / REALISM_MD} (and {REALISM_JSON})",
    ]
    return "\n".join(lines)

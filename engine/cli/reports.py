"""Commands that read results folders: ``report``, ``compare``, ``trace``; and ``profiles``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipstorm.engine.cli.options import AwsRoleOpt, TargetOpt
from pipstorm.engine.errors import UsageError
from pipstorm.engine.rundir.jsonl import RecordError


def profiles() -> None:
    """List the built-in profiles."""
    from tabulate import tabulate

    from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES

    rows = [
        [
            p.name,
            p.clients,
            f"{p.duration_s:g}",
            f"{p.tick_s:g}",
            f"x{p.burst_multiplier} every {p.burst_every_s:g} s" if p.has_bursts else "-",
            p.peak_clients,
            p.description,
        ]
        for p in BUILTIN_PROFILES.values()
    ]
    headers = ["profile", "clients", "duration s", "tick s", "bursts", "peak", "description"]
    typer.echo(tabulate(rows, headers=headers, tablefmt="github"))


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run's results folder.")],
    cloudwatch: Annotated[
        bool,
        typer.Option(
            "--cloudwatch",
            help="Fetch the AWS stack's CloudWatch series for the run's window first "
            "(cloudwatch.jsonl): for a run that did not, or before CloudWatch had them all.",
        ),
    ] = False,
    target: TargetOpt = None,
    aws_role_arn: AwsRoleOpt = None,
) -> None:
    """Rebuild report.json, report.md, report.html and the charts from a run's JSONL streams
    (also an interrupted run)."""
    from pipstorm.engine.report.terminal import terminal_summary
    from pipstorm.engine.report.write import write_reports

    if not (run_dir / "run.json").is_file():
        raise RecordError(f"{run_dir} is not a pipstorm results folder (no run.json)")
    if cloudwatch:
        _refetch_cloudwatch(run_dir, target, aws_role_arn)
    elif target is not None:
        raise UsageError("--target on report only says which stack --cloudwatch asks about")
    built = write_reports(run_dir)
    typer.echo(terminal_summary(built))
    raise typer.Exit(built.exit_code)


def _refetch_cloudwatch(run_dir: Path, target: str | None, role_arn: str | None) -> None:
    from pipstorm.engine.run.target.cloudwatch import fetch_run_cloudwatch
    from pipstorm.engine.run.target.opening import parse_target, resolve_stack
    from pipstorm.engine.rundir.meta import RunMeta

    spec = parse_target(target)
    if spec.index_url is not None:
        raise UsageError("--target for --cloudwatch must be terraform:DIR (a URL has no metrics)")
    data = fetch_run_cloudwatch(
        run_dir, RunMeta.read(run_dir), role_arn=role_arn, stack=resolve_stack(spec)
    )
    typer.echo(
        f"CloudWatch: {len(data.series)} series with datapoints -> {run_dir / 'cloudwatch.jsonl'}",
        err=True,
    )


def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Results folders or report.json files; the first is the baseline."),
    ],
    output_format: Annotated[str, typer.Option("--format", help="table, md or json.")] = "table",
) -> None:
    """Key figures of two or more runs side by side, with changes against the first."""
    from pipstorm.engine.report.compare import compare_paths

    typer.echo(compare_paths(runs, output_format))


def trace(
    run_dir: Annotated[Path, typer.Argument(help="A run's results folder.")],
    run_id: Annotated[
        str | None, typer.Option("--run", help="One client run's timeline (a run id).")
    ] = None,
) -> None:
    """Request timelines: one run's attempts per URL, or the whole run's retries and failures."""
    from pipstorm.engine.analysis.trace import trace_runs
    from pipstorm.engine.report.trace_text import render_run, render_summary
    from pipstorm.engine.rundir.data import RunData

    data = trace_runs(RunData.load(run_dir))
    if run_id is None:
        typer.echo(render_summary(data))
        return
    found = [t for t in data.traces if t.run_id == run_id]
    if not found:
        raise RecordError(f"no client run {run_id!r} in {run_dir}")
    typer.echo(render_run(found[0]))

"""``pipstorm replay LOG...``: an incident replayed from the index's access log with real clients
(``pipstorm.engine.workflows.replay``)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from pipstorm.engine.cli.options import (
    AllowGeneratorBoundOpt,
    AwsRoleOpt,
    DashboardAddressOpt,
    DashboardOpt,
    DashboardRemoteOpt,
    JunitOpt,
    LaunchOpt,
    QuietOpt,
    ResultsOpt,
    RunTimeoutOpt,
    TargetOpt,
    ThresholdOpt,
    WorkersOpt,
    check_ci_outputs,
    ci_outputs,
    live_dashboard,
)

LogsOpt = Annotated[
    list[str],
    typer.Argument(
        help="Access logs: ALB or nginx/gunicorn combined format, files or folders (plain "
        "or gzipped), or s3://bucket/prefix.",
        show_default=False,
        metavar="LOG",
    ),
]
ReplayIndexUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="Index to replay against (default: an embedded pypiserver serving the log's "
        "releases). Credentials come from PYPI_USERNAME/PYPI_PASSWORD."
    ),
]
RawOpt = Annotated[
    bool,
    typer.Option(
        help="Replay requests no client explains (browsers, curl) as the synthetic http "
        "client (default: counted and listed only)."
    ),
]
ReplayForceOpt = Annotated[
    bool,
    typer.Option(help="Play a replay this machine cannot prepare or hold (recorded as a warning)."),
]


def replay(
    logs: LogsOpt,
    speed: Annotated[
        float, typer.Option(help="Play the log F times faster (instants divided by F).")
    ] = 1.0,
    start: Annotated[
        str | None,
        typer.Option("--from", help="Replay requests from this time on (ISO 8601; UTC if bare)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Replay requests before this time (ISO 8601).")
    ] = None,
    target: TargetOpt = None,
    index_url: ReplayIndexUrlOpt = None,
    allow_remote_target: Annotated[
        bool,
        typer.Option(help="Allow a target (--target, --index-url) that is not a loopback address."),
    ] = False,
    aws_role_arn: AwsRoleOpt = None,
    raw: RawOpt = False,
    gap: Annotated[
        float,
        typer.Option(help="Seconds of silence after which a client's next request is a new run."),
    ] = 10.0,
    results: ResultsOpt = Path("results"),
    threshold: ThresholdOpt = None,
    workers: WorkersOpt = None,
    run_timeout: RunTimeoutOpt = 120.0,
    quiet: QuietOpt = False,
    launch: LaunchOpt = None,
    allow_generator_bound: AllowGeneratorBoundOpt = False,
    force: ReplayForceOpt = False,
    junit: JunitOpt = None,
    dashboard: DashboardOpt = False,
    dashboard_address: DashboardAddressOpt = None,
    dashboard_allow_remote: DashboardRemoteOpt = False,
) -> None:
    """Replay an access log with the real clients it shows, and compare with the original."""
    from pipstorm.engine.errors import UsageError
    from pipstorm.engine.run.target.opening import parse_target
    from pipstorm.engine.workflows.replay import ReplayOptions, run_replay
    from pipstorm.infra.aws.s3_logs import s3_log_lines

    if not gap > 0:
        raise UsageError(f"--gap must be > 0 s, got {gap}")
    check_ci_outputs(junit)
    spec = parse_target(target, index_url)
    options = ReplayOptions(
        logs=tuple(logs),
        speed=speed,
        start=start,
        end=end,
        index_url=spec.index_url,
        terraform_dir=spec.terraform_dir,
        allow_remote_target=allow_remote_target,
        aws_role_arn=aws_role_arn,
        raw=raw,
        gap_s=gap,
        results_root=results,
        threshold_overrides=tuple(threshold or ()),
        workers=workers,
        run_timeout_s=run_timeout,
        quiet=quiet,
        launch=launch,
        allow_generator_bound=allow_generator_bound,
        force=force,
    )
    with live_dashboard(dashboard, dashboard_address, allow_remote=dashboard_allow_remote) as board:
        result = run_replay(
            replace(options, dashboard=board), s3=partial(s3_log_lines, role_arn=aws_role_arn)
        )
    ci_outputs(result.run.report, junit)
    raise typer.Exit(result.run.exit_code)

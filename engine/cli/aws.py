"""``pipstorm watch``: the AWS stack's CloudWatch series, live, in a second terminal.

The seed ran ``aws cloudwatch get-metric-statistics`` loops by hand while a test ran; this is
that, for every series a report shows, until Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pipstorm.engine.cli.options import AwsRoleOpt, TargetOpt
from pipstorm.engine.errors import UsageError


def watch(
    target: TargetOpt = None,
    aws_role_arn: AwsRoleOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between two fetches.")] = 30.0,
    lookback: Annotated[float, typer.Option(help="Seconds of history each fetch shows.")] = 600.0,
    ticks: Annotated[
        int | None, typer.Option(help="Stop after N fetches (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Print the stack's CloudWatch series every --interval seconds (ECS, EFS, ALB)."""
    from pipstorm.engine.run.target.opening import parse_target, resolve_stack
    from pipstorm.infra.aws.session import region_from
    from pipstorm.infra.aws.watch import watch_stack

    spec = parse_target(target)
    stack = resolve_stack(spec)
    if stack is None:
        raise UsageError("watch needs --target terraform:DIR (the stack whose metrics to show)")
    if interval <= 0 or lookback <= 0 or (ticks is not None and ticks <= 0):
        raise UsageError("--interval, --lookback and --ticks must be positive")
    region = region_from(os.environ, stack.region)
    typer.echo(f"watching {stack.index_url} in {region or '?'} (Ctrl-C stops)", err=True)
    try:
        watch_stack(
            stack.dimensions,
            region=region,
            out=sys.stdout,
            role_arn=aws_role_arn,
            interval=interval,
            lookback=lookback,
            max_ticks=ticks,
        )
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends: not an error
        typer.echo("stopped", err=True)

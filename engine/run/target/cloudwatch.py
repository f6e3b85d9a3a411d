"""CloudWatch for a run against an AWS stack: what run.json keeps, and the fetch after the run.

A run against ``--target terraform:DIR`` records the stack's CloudWatch dimensions and region
in ``run.json`` (``target.cloudwatch``, ``target.region``: names, no secret), so the series can
be fetched right after the run and again later (``pipstorm report DIR --cloudwatch``, when
CloudWatch has published the last minutes) from the folder alone.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipstorm.engine.errors import UsageError
from pipstorm.engine.rundir.files import CLOUDWATCH_FILE
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.aws.cloudwatch_log import write_cloudwatch
from pipstorm.infra.aws.metric_data import CloudWatchData, fetch_metrics
from pipstorm.infra.aws.metrics import MetricWindow
from pipstorm.infra.aws.session import region_from
from pipstorm.infra.aws.stack import AwsStack, StackDimensions


def stack_meta(stack: AwsStack) -> dict[str, Any]:
    """What run.json's ``target`` records about a stack (dimension names and region only)."""
    return {
        "terraform_dir": None if stack.source is None else str(stack.source),
        "region": stack.region,
        "cloudwatch": dataclasses.asdict(stack.dimensions),
    }


def recorded_dimensions(meta: RunMeta) -> StackDimensions | None:
    """The stack's dimensions as run.json recorded them, or None for a run not against AWS."""
    recorded = meta.target.get("cloudwatch")
    if not isinstance(recorded, Mapping):
        return None
    names = StackDimensions.field_names()
    values = {k: v for k, v in recorded.items() if k in names and isinstance(v, str)}
    return StackDimensions(**values)


def fetch_run_cloudwatch(
    run_dir: Path,
    meta: RunMeta,
    *,
    role_arn: str | None = None,
    stack: AwsStack | None = None,
    environ: Mapping[str, str] | None = None,
) -> CloudWatchData:
    """Fetch the run's window and write ``cloudwatch.jsonl``; never raises for AWS's sake.

    ``stack`` overrides what run.json recorded (``report --cloudwatch --target terraform:DIR``).
    UsageError when the run names no stack or never started."""
    env = os.environ if environ is None else environ
    dimensions = stack.dimensions if stack is not None else recorded_dimensions(meta)
    if dimensions is None:
        raise UsageError(
            f"{run_dir}: run.json names no AWS stack; "
            "pass --target terraform:DIR to say which stack it loaded"
        )
    if meta.started is None:
        raise UsageError(f"{run_dir}: the run never started: no window to ask CloudWatch about")
    window = MetricWindow.around(meta.started, meta.ended or time.time())
    fallback = stack.region if stack is not None else meta.target.get("region")
    region = region_from(env, fallback if isinstance(fallback, str) else None)
    data = fetch_metrics(dimensions, window, region=region, role_arn=role_arn, environ=env)
    write_cloudwatch(run_dir / CLOUDWATCH_FILE, data)
    return data

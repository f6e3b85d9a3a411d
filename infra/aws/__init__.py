"""The AWS stack: Terraform outputs of the deployed index and its CloudWatch series.

``infra/terraform/pypiserver`` (data, not a package) deploys the index with the published
``infrahouse/pypiserver/aws`` module; this package reads what it outputs and what CloudWatch
holds about it. boto3 is imported only when AWS is actually asked.
"""

from __future__ import annotations

from pipstorm.infra.aws.cloudwatch_log import (
    CloudWatchLogError,
    read_cloudwatch,
    write_cloudwatch,
)
from pipstorm.infra.aws.metric_data import CloudWatchData, MissingSeries, Series, fetch_metrics
from pipstorm.infra.aws.metrics import METRICS, MetricSpec, MetricWindow, metric_spec
from pipstorm.infra.aws.session import AwsAccessError, aws_session, region_from
from pipstorm.infra.aws.stack import AwsStack, StackDimensions
from pipstorm.infra.aws.terraform_outputs import TerraformOutputError, read_stack
from pipstorm.infra.aws.watch import watch_stack

__all__ = [
    "METRICS",
    "AwsAccessError",
    "AwsStack",
    "CloudWatchData",
    "CloudWatchLogError",
    "MetricSpec",
    "MetricWindow",
    "MissingSeries",
    "Series",
    "StackDimensions",
    "TerraformOutputError",
    "aws_session",
    "fetch_metrics",
    "metric_spec",
    "read_cloudwatch",
    "read_stack",
    "region_from",
    "watch_stack",
    "write_cloudwatch",
]

"""CloudWatch and STS through moto: the nine series end to end, roles, and every way to fail.

moto stores what ``put_metric_data`` sends and answers ``GetMetricData`` from it, so these tests
hold the real query building (namespaces, names, dimensions, periods, window) against it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.authorization import enable_iam_authentication

from pipstorm.infra.aws.cloudwatch_log import CloudWatchLogError, read_cloudwatch, write_cloudwatch
from pipstorm.infra.aws.metric_data import CloudWatchData, MissingSeries, fetch_metrics
from pipstorm.infra.aws.metrics import METRIC_KEYS, METRICS, MetricWindow, metric_spec
from pipstorm.infra.aws.session import AwsAccessError, aws_session, region_from
from pipstorm.infra.aws.stack import StackDimensions
from tests.infra.aws.support import DIMENSIONS, REGION, minute, put_all, put_points

BASE = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)


def run_window(minutes: int = 5) -> MetricWindow:
    """The padded window of a run that started at BASE + 10 s and lasted ``minutes``."""
    start = BASE.timestamp() + 10
    return MetricWindow.around(start, start + minutes * 60 - 20, period=60)


def test_the_window_is_the_run_padded_by_a_period_and_aligned() -> None:
    window = MetricWindow.around(1000.5, 1130.0, period=60)
    assert (window.start, window.end, window.period) == (900.0, 1200.0, 60)
    assert MetricWindow.around(1020.0, 1020.0, period=60).end == 1140.0
    with pytest.raises(ValueError, match="multiple of 60"):
        MetricWindow.around(0, 1, period=90)


@pytest.mark.usefixtures("aws")
def test_every_series_moto_holds_comes_back_with_its_values() -> None:
    stored = put_all(BASE)
    data = fetch_metrics(DIMENSIONS, run_window(), region=REGION)
    assert data.missing == ()
    assert {series.key for series in data.series} == set(METRIC_KEYS)
    for series in data.series:
        spec = metric_spec(series.key)
        assert (series.namespace, series.name, series.stat) == (
            spec.namespace,
            spec.name,
            spec.stat,
        )
        assert [value for _, value in series.points] == stored[series.key]
        assert [ts for ts, _ in series.points] == [minute(i, BASE).timestamp() for i in range(5)]
    assert data.missing_summary() is None


@pytest.mark.usefixtures("aws")
def test_points_outside_the_window_or_of_another_stack_are_not_fetched() -> None:
    spec = metric_spec("ecs_memory")
    put_points(spec, [(minute(-30, BASE), 99.0), (minute(2, BASE), 42.0), (minute(40, BASE), 98.0)])
    other = StackDimensions(ecs_cluster_name="other", ecs_service_name="pypiserver")
    put_points(spec, [(minute(3, BASE), 77.0)], dimensions=other)
    data = fetch_metrics(DIMENSIONS, run_window(), region=REGION, metrics=[spec])
    (series,) = data.series
    assert series.points == ((minute(2, BASE).timestamp(), 42.0),)


@pytest.mark.usefixtures("aws")
def test_series_without_datapoints_or_dimensions_are_missing_with_a_reason() -> None:
    put_points(metric_spec("ecs_cpu"), [(minute(1, BASE), 12.5)])
    put_points(metric_spec("alb_request_count"), [(minute(1, BASE), 300.0)])
    no_efs = StackDimensions(**{**DIMENSIONS.__dict__, "efs_file_system_id": None})
    data = fetch_metrics(no_efs, run_window(), region=REGION)
    assert {series.key for series in data.series} == {"ecs_cpu", "alb_request_count"}
    reasons = {item.key: item.reason for item in data.missing}
    assert reasons["efs_burst_credits"] == "stack output efs_file_system_id unknown"
    assert reasons["ecs_memory"] == "no datapoints in the window"
    assert set(reasons) == set(METRIC_KEYS) - {"ecs_cpu", "alb_request_count"}
    summary = data.missing_summary()
    assert summary is not None
    assert (
        "efs_burst_credits, efs_percent_io_limit, efs_client_connections: stack output" in summary
    )


def create_role(name: str = "pypiserver-tester") -> str:
    iam: Any = boto3.client("iam", region_name="us-east-1")
    trust = {"Version": "2012-10-17", "Statement": []}
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    return arn


@pytest.mark.usefixtures("aws")
def test_a_role_from_aws_role_arn_is_assumed_through_sts(monkeypatch: pytest.MonkeyPatch) -> None:
    role = create_role()
    monkeypatch.setenv("AWS_ROLE_ARN", role)
    session = aws_session(REGION)
    identity: Any = session.client("sts").get_caller_identity()
    assert identity["Arn"].startswith(
        "arn:aws:sts::123456789012:assumed-role/pypiserver-tester/pipstorm-"
    )
    put_points(metric_spec("ecs_memory"), [(minute(1, BASE), 55.0)])
    data = fetch_metrics(
        DIMENSIONS, run_window(), region=REGION, metrics=[metric_spec("ecs_memory")]
    )
    assert [series.points for series in data.series] == [((minute(1, BASE).timestamp(), 55.0),)]


def limited_user(monkeypatch: pytest.MonkeyPatch, actions: list[str]) -> None:
    """Credentials of an IAM user allowed only ``actions``, in the environment."""
    iam: Any = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="limited")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_user_policy(UserName="limited", PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="limited")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


@pytest.mark.usefixtures("aws")
def test_without_permission_to_read_metrics_every_series_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put_all(BASE)
    limited_user(monkeypatch, ["sts:GetCallerIdentity"])
    with enable_iam_authentication():
        data = fetch_metrics(DIMENSIONS, run_window(), region=REGION)
    assert data.series == ()
    assert {item.key for item in data.missing} == set(METRIC_KEYS)
    reason = data.missing[0].reason
    assert reason.startswith("no permission for cloudwatch:GetMetricData (AccessDenied: ")
    assert "not authorized" in reason
    assert all(item.reason == reason for item in data.missing)


@pytest.mark.usefixtures("aws")
def test_a_role_that_cannot_be_assumed_is_a_reason_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    role = create_role()
    limited_user(monkeypatch, ["cloudwatch:GetMetricData"])
    with enable_iam_authentication():
        data = fetch_metrics(DIMENSIONS, run_window(), region=REGION, role_arn=role)
    assert data.series == ()
    assert data.missing[0].reason.startswith(f"cannot assume role {role}: AccessDenied: ")


def test_without_credentials_nothing_is_asked_and_the_report_says_why() -> None:
    # No moto here: botocore finds no credentials before any request would leave the machine.
    data = fetch_metrics(DIMENSIONS, run_window(), region=REGION)
    assert data.series == ()
    assert len(data.missing) == len(METRICS)
    assert {item.reason for item in data.missing} == {
        "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    }
    with pytest.raises(AwsAccessError, match="no AWS credentials"):
        aws_session(REGION)


@pytest.mark.usefixtures("aws")
def test_without_a_region_the_reason_is_the_region() -> None:
    data = fetch_metrics(DIMENSIONS, run_window(), region=None)
    assert {item.reason for item in data.missing} == {"no AWS region: set AWS_REGION"}


def test_region_comes_from_aws_region_before_the_stack() -> None:
    assert region_from({"AWS_REGION": "eu-west-1"}, "us-west-2") == "eu-west-1"
    assert region_from({"AWS_DEFAULT_REGION": "eu-north-1"}, "us-west-2") == "eu-north-1"
    assert region_from({}, "us-west-2") == "us-west-2"


@pytest.mark.usefixtures("aws")
def test_cloudwatch_jsonl_round_trips_series_and_missing(tmp_path: Path) -> None:
    put_points(metric_spec("ecs_memory"), [(minute(i, BASE), 40.0 + i) for i in range(3)])
    data = fetch_metrics(DIMENSIONS, run_window(), region=REGION)
    path = tmp_path / "cloudwatch.jsonl"
    write_cloudwatch(path, data)
    assert read_cloudwatch(path) == data
    assert path.stat().st_mode & 0o777 == 0o644
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines[:4]] == ["window", "point", "point", "point"]
    assert lines[1] == {
        "kind": "point", "metric": "ecs_memory", "namespace": "AWS/ECS",
        "name": "MemoryUtilization", "stat": "Average", "unit": "%",
        "ts": minute(0, BASE).timestamp(), "value": 40.0,
    }  # fmt: skip
    assert sum(line["kind"] == "missing" for line in lines) == len(METRICS) - 1
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_reading_a_run_without_cloudwatch_or_a_broken_file(tmp_path: Path) -> None:
    assert read_cloudwatch(tmp_path / "cloudwatch.jsonl") is None
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"kind": "point", "metric": "x"}\n')
    with pytest.raises(CloudWatchLogError, match=r"broken.jsonl:1: not a cloudwatch record"):
        read_cloudwatch(broken)


def test_missing_summary_groups_series_by_reason() -> None:
    data = CloudWatchData(
        run_window(),
        REGION,
        missing=(
            MissingSeries("ecs_cpu", "no datapoints in the window"),
            MissingSeries("ecs_memory", "no datapoints in the window"),
            MissingSeries("efs_burst_credits", "stack output efs_file_system_id unknown"),
        ),
    )
    assert data.missing_summary() == (
        "CloudWatch series missing: ecs_cpu, ecs_memory: no datapoints in the window; "
        "efs_burst_credits: stack output efs_file_system_id unknown"
    )

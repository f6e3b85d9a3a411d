"""Access logs read from S3 (moto): gzipped and plain objects under a prefix, in key order,
and every failure one line."""

from __future__ import annotations

import gzip

import boto3
import pytest

from pipstorm.engine.run.replay.read import read_logs
from pipstorm.infra.aws.s3_logs import s3_log_lines, split_s3_url
from pipstorm.infra.aws.session import AwsAccessError
from tests.engine.run.replay.lines import AWS_HTTP, AWS_HTTPS

BUCKET = "incident-logs"
PREFIX = "alb/AWSLogs/123456789012/elasticloadbalancing/us-west-2/2025/12/27/"


@pytest.fixture
def bucket(aws: None, monkeypatch: pytest.MonkeyPatch) -> object:
    del aws
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    s3 = boto3.client("s3", region_name="us-west-2")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    # ALB names its files by end time: key order is time order.
    s3.put_object(
        Bucket=BUCKET, Key=PREFIX + "b_1210Z.log.gz", Body=gzip.compress(AWS_HTTPS.encode())
    )
    s3.put_object(
        Bucket=BUCKET, Key=PREFIX + "a_1205Z.log", Body=f"{AWS_HTTP}\nnot a line\n".encode()
    )
    s3.put_object(Bucket=BUCKET, Key="elsewhere/c.log", Body=b"never read\n")
    return s3


def test_every_object_under_the_prefix_is_read_gunzipped_in_key_order(bucket: object) -> None:
    del bucket
    lines = list(s3_log_lines(f"s3://{BUCKET}/alb/"))
    assert lines == [AWS_HTTP, "not a line", AWS_HTTPS]
    read = read_logs([f"s3://{BUCKET}/alb/"], s3=s3_log_lines)
    assert (len(read.requests), read.unreadable) == (2, 1)
    # --aws-role-arn: the same objects read as an assumed role (moto's STS grants it)
    role = "arn:aws:iam::123456789012:role/log-reader"
    assert list(s3_log_lines(f"s3://{BUCKET}/alb/", role_arn=role)) == lines


def test_an_empty_prefix_a_missing_bucket_and_a_bad_url_are_one_line_errors(
    bucket: object,
) -> None:
    del bucket
    with pytest.raises(AwsAccessError, match="no objects under that prefix"):
        list(s3_log_lines(f"s3://{BUCKET}/nothing-here/"))
    with pytest.raises(AwsAccessError, match="cannot read s3://no-such-bucket/x: NoSuchBucket"):
        list(s3_log_lines("s3://no-such-bucket/x"))
    with pytest.raises(AwsAccessError, match="is not s3://bucket/prefix"):
        split_s3_url("s3:///prefix-only")
    assert split_s3_url("s3://b/p/q/") == ("b", "p/q/")


def test_without_credentials_it_says_what_to_set() -> None:
    with pytest.raises(AwsAccessError, match="no AWS credentials"):
        list(s3_log_lines(f"s3://{BUCKET}/alb/"))

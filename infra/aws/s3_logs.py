"""Access logs in S3: every object under ``s3://bucket/prefix``, gunzipped, as lines.

The seed's module can have its ALB write access logs to a bucket (one gzipped file per node
every 5 minutes, under ``prefix/AWSLogs/<account>/elasticloadbalancing/<region>/yyyy/mm/dd/``);
``pipstorm replay s3://bucket/prefix`` reads them with the usual credential chain, as a role
with ``--aws-role-arn`` (else ``AWS_ROLE_ARN``), like the CloudWatch readers. Objects are read
one at a time, in key order (their names carry their end time), so memory holds one object's
bytes, not the whole log. Every failure is one ``AwsAccessError`` line.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from typing import Final
from urllib.parse import urlsplit

from pipstorm.infra.aws.session import (
    AwsAccessError,
    aws_session,
    botocore_error_text,
    client_config,
    client_error_text,
    region_from,
)

#: S3 needs some region to sign with; a bucket elsewhere answers with a redirect boto3 follows.
FALLBACK_REGION: Final = "us-east-1"
#: An access-log prefix holding more objects than this is a mistake (a whole bucket).
MAX_OBJECTS: Final = 100_000


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); AwsAccessError when there is no bucket."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise AwsAccessError(f"{url!r} is not s3://bucket/prefix")
    return parts.netloc, parts.path.lstrip("/")


def s3_log_lines(url: str, *, role_arn: str | None = None) -> Iterator[str]:
    """The lines of every object under ``url``, objects in key order, gzip undone."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_url(url)
    session = aws_session(region_from(os.environ, FALLBACK_REGION), role_arn=role_arn)
    s3 = session.client("s3", config=client_config())
    try:
        keys = _keys(s3, bucket, prefix)
        if not keys:
            raise AwsAccessError(f"{url}: no objects under that prefix")
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            yield from data.decode("utf-8", errors="replace").splitlines()
    except ClientError as exc:
        raise AwsAccessError(f"cannot read {url}: {client_error_text(exc)}") from None
    except BotoCoreError as exc:
        raise AwsAccessError(f"cannot read {url}: {botocore_error_text(exc)}") from None
    except (OSError, EOFError) as exc:  # a gzip object cut short or corrupt
        raise AwsAccessError(f"cannot read {url}: {exc}") from None


def _keys(s3: object, bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix``, sorted, bounded by ``MAX_OBJECTS``."""
    keys: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    for page in pages:
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                keys.append(item["Key"])
        if len(keys) > MAX_OBJECTS:
            raise AwsAccessError(
                f"s3://{bucket}/{prefix} holds more than {MAX_OBJECTS} objects: "
                "give a narrower prefix (a day: .../yyyy/mm/dd/)"
            )
    return sorted(keys)

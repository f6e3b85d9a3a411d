"""A boto3 session for reading CloudWatch: region from the environment, a role through STS.

As in the seed, ``AWS_REGION`` picks the region and ``AWS_ROLE_ARN`` a role to assume with the
caller's credentials. Every failure becomes an ``AwsAccessError`` whose message says, in one
line, what is missing (credentials, region, permission) so that a report can show it instead of
failing the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from pipstorm.infra.errors import InfraError

if TYPE_CHECKING:
    import boto3

ROLE_VAR: Final = "AWS_ROLE_ARN"
REGION_VARS: Final = ("AWS_REGION", "AWS_DEFAULT_REGION")
SESSION_NAME: Final = "pipstorm"
ROLE_DURATION_S: Final = 3600
# A report or a watch tick must not hang on an unreachable endpoint: short timeouts, 2 attempts.
CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 20.0


class AwsAccessError(InfraError):
    """AWS cannot be read; the message is one line saying why (never a secret)."""


def region_from(environ: Mapping[str, str], fallback: str | None = None) -> str | None:
    """``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), else the stack's own region."""
    for name in REGION_VARS:
        if environ.get(name):
            return environ[name]
    return fallback


def aws_session(
    region: str | None,
    *,
    role_arn: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> boto3.Session:
    """A session in ``region``, as ``role_arn`` (else ``AWS_ROLE_ARN``) when one is given."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    env = os.environ if environ is None else environ
    if not region:
        raise AwsAccessError("no AWS region: set AWS_REGION")
    role = role_arn or env.get(ROLE_VAR) or None
    base = boto3.Session(region_name=region)
    if role is None:
        if base.get_credentials() is None:
            raise AwsAccessError(no_credentials_reason())
        return base
    try:
        answer = base.client("sts", config=client_config()).assume_role(
            RoleArn=role, RoleSessionName=f"{SESSION_NAME}-{os.getpid()}",
            DurationSeconds=ROLE_DURATION_S,
        )  # fmt: skip
    except ClientError as exc:
        raise AwsAccessError(f"cannot assume role {role}: {client_error_text(exc)}") from None
    except BotoCoreError as exc:
        raise AwsAccessError(f"cannot assume role {role}: {botocore_error_text(exc)}") from None
    granted = answer["Credentials"]
    return boto3.Session(
        aws_access_key_id=granted["AccessKeyId"],
        aws_secret_access_key=granted["SecretAccessKey"],
        aws_session_token=granted["SessionToken"],
        region_name=region,
    )


def client_config() -> object:
    """botocore client settings: short timeouts, few retries (a report must not hang)."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 2, "mode": "standard"},
    )


def no_credentials_reason() -> str:
    """Why nothing can be fetched without credentials, and what to set."""
    return "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"


def client_error_text(exc: Exception) -> str:
    """``AccessDenied: <first line of AWS's message>`` from a botocore ClientError.

    An error body botocore could not parse arrives whole in ``Message`` (moto answers the JSON
    protocol with XML): the code and message are then taken from its tags.
    """
    response = getattr(exc, "response", {}) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(error.get("Code") or "error")
    message = str(error.get("Message") or "")
    if message.lstrip().startswith("<"):
        tagged_code = re.search(r"<Code>([^<]*)</Code>", message)
        tagged_message = re.search(r"<Message>([^<]*)</Message>", message)
        code = tagged_code.group(1) if tagged_code else code
        message = tagged_message.group(1) if tagged_message else ""
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    return f"{code}: {first}" if first else code


def is_access_denied(exc: Exception) -> bool:
    """Whether AWS refused for want of a permission (HTTP 403 or an access-denied code)."""
    response = getattr(exc, "response", {}) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = client_error_text(exc)
    return status == 403 or text.startswith(("AccessDenied", "UnauthorizedOperation"))


def botocore_error_text(exc: Exception) -> str:
    """One line for a botocore error that is not an AWS answer (credentials, network)."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return no_credentials_reason()
    text = str(exc).splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__

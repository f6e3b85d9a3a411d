"""Helpers for tests against moto's CloudWatch: a stack's dimensions, datapoints, isolation.

``isolate_aws`` gives a test an environment holding no AWS variable of the machine's, instance
metadata lookups disabled (botocore would otherwise try 169.254.169.254, off loopback), and
credential files pointed at paths that do not exist: no test can reach a real account.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipstorm.infra.aws.metrics import METRICS, MetricSpec
from pipstorm.infra.aws.stack import StackDimensions

REGION = "us-west-2"
DIMENSIONS = StackDimensions(
    ecs_cluster_name="pypiserver-cluster",
    ecs_service_name="pypiserver",
    efs_file_system_id="fs-0123456789abcdef0",
    alb_arn_suffix="app/pypiserver/0123456789abcdef",
    target_group_arn_suffix="targetgroup/pypiserver/fedcba9876543210",
)


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS variable, no instance metadata, no credential files for the current test."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


def minute(offset: int, base: dt.datetime | None = None) -> dt.datetime:
    """A whole minute ``offset`` minutes from ``base`` (default: the current minute), UTC."""
    start = base or dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return start + dt.timedelta(minutes=offset)


def put_points(
    spec: MetricSpec,
    values: list[tuple[dt.datetime, float]],
    dimensions: StackDimensions = DIMENSIONS,
) -> None:
    """Store datapoints of one catalogue series in (moto's) CloudWatch."""
    client: Any = boto3.client("cloudwatch", region_name=REGION)
    client.put_metric_data(
        Namespace=spec.namespace,
        MetricData=[
            {
                "MetricName": spec.name,
                "Dimensions": [
                    {"Name": name, "Value": dimensions.value(field)}
                    for name, field in spec.dimensions
                ],
                "Timestamp": stamp,
                "Value": value,
            }
            for stamp, value in values
        ],
    )


def put_all(base: dt.datetime, minutes: int = 5) -> dict[str, list[float]]:
    """One datapoint a minute for every catalogue series; the values each series got."""
    stored: dict[str, list[float]] = {}
    for index, spec in enumerate(METRICS):
        values = [float(index * 100 + step) for step in range(minutes)]
        put_points(spec, [(minute(step, base), value) for step, value in enumerate(values)])
        stored[spec.key] = values
    return stored


def install_fake_terraform(
    bin_dir: Path, record: Path, *, stdout: str = "", stderr: str = "", code: int = 0
) -> None:
    """A ``terraform`` script that records argv and env, then answers as told."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "terraform"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'w') as f:\n"
        "    json.dump({'argv': sys.argv[1:], 'env': dict(os.environ), 'cwd': os.getcwd()}, f)\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({code})\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

"""AWS tests run against moto in process: no real account can be reached (``support``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from tests.infra.aws.support import isolate_aws


@pytest.fixture(autouse=True)
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto for every AWS service, with its fake credentials in the environment."""
    with mock_aws():
        yield

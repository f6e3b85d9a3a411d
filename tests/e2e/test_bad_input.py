"""Bad input gets one line naming the problem and exit 2, never a traceback; nothing is sent
anywhere but loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import pipstorm

pytestmark = pytest.mark.e2e


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ERROR: "), stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "medium_load"], "unknown profile 'medium_load'"),
        (["--profile", "light_load", "--threshold", "p95_lisitng_ms=3"], "p95_lisitng_ms"),
        (["--profile", "light_load", "--threshold", "error_rate=low"], "not a number"),
        (["--profile", "light_load", "--duration", "5", "--time-scale", "2"], "not both"),
        (
            ["--profile", "light_load", "--index-url", "http://10.11.12.13/simple/"],
            "not a loopback address",
        ),
    ],
)
def test_bad_arguments(
    e2e_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    proc = pipstorm(["run", *args, "--results", str(tmp_path / "r")], e2e_env, tmpdir=tmp_path)
    assert proc.returncode == 2
    assert message in one_error_line(proc.stderr)


def test_unreachable_index(e2e_env: dict[str, str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/simple/"
    proc = pipstorm(
        ["run", "--profile", "light_load", "--index-url", url, "--results", str(tmp_path / "r")],
        e2e_env,
        tmpdir=tmp_path,
    )
    assert proc.returncode == 2
    assert "unreachable" in one_error_line(proc.stderr)


def test_wrong_credentials_are_named_and_never_echoed(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    corpus = cached_corpus(CorpusSpec(packages=2, versions=("1.0.0",)), tmp_path / "cache")
    with LocalPypiserver(corpus.directory, credentials=Credentials.generate()) as server:
        env = {
            **e2e_env,
            "PYPI_USERNAME": server.credentials.username,
            "PYPI_PASSWORD": "not-the-password-xyz",
        }
        proc = pipstorm(
            [
                "run",
                "--profile",
                "light_load",
                "--index-url",
                server.index_url,
                "--results",
                str(tmp_path / "r"),
            ],
            env,
            tmpdir=tmp_path / "t",
        )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "refused access (HTTP 40" in line and "wrong credentials" in line
    assert "not-the-password-xyz" not in proc.stderr + proc.stdout

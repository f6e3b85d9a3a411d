"""``pipstorm run --target terraform:DIR`` end to end: a fake ``terraform`` names a real local
pypiserver (with the password only its outputs know), moto holds the stack's CloudWatch series.

The run goes in process so moto's in-process CloudWatch answers the fetch after the run; the
clients, proxy and pool are as real as ever. While it runs, a watcher scans the process table:
the password must never be in a command line, nor in an environment other than the proxy's
(which gets it by design, ``pipstorm.infra.credentials``); afterwards, never in a file of the
results.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from moto import mock_aws

from pipstorm.engine.cli.app import main
from pipstorm.infra.aws.metrics import METRICS
from pipstorm.infra.credentials import UPSTREAM_PASSWORD_ENV, Credentials
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.infra.aws.support import (
    DIMENSIONS,
    REGION,
    install_fake_terraform,
    isolate_aws,
    put_points,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e
PASSWORD = "only-terraform-knows-4c1d9e"  # noqa: S105 - a test value


class LeakWatcher(threading.Thread):
    """Polls every process for the password in its argv, and this process's descendants (the
    proxy excepted) for it in their environment, until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.found: list[str] = []
        self.scans = 0

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.is_set():
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if PASSWORD in " ".join(proc.info["cmdline"] or ()):
                    self.found.append(f"argv of {proc.info['pid']}")
            for child in me.children(recursive=True):
                try:
                    env = child.environ()
                except (psutil.Error, OSError):
                    continue
                if UPSTREAM_PASSWORD_ENV not in env and PASSWORD in "\n".join(env.values()):
                    self.found.append(f"environment of {child.pid} {child.cmdline()[:3]}")
            self.scans += 1
            self.stop.wait(0.05)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Terraform root whose outputs name a local pypiserver holding the default corpus."""
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_REGION", REGION)
    for name in ("PYPI_URL", "PYPI_USERNAME", "PYPI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    corpus = cached_corpus(CorpusSpec())
    credentials = Credentials(username="stackuser", password=PASSWORD)
    with LocalPypiserver(corpus.directory, credentials=credentials) as server:
        values: dict[str, object] = {
            "pypi_url": server.index_url,
            "pypi_username": credentials.username,
            "pypi_password": PASSWORD,
            "aws_region": REGION,
            **DIMENSIONS.__dict__,
        }
        outputs = {k: {"sensitive": "pypi_" in k, "value": v} for k, v in values.items()}
        install_fake_terraform(
            tmp_path / "bin", tmp_path / "terraform-call.json", stdout=json.dumps(outputs)
        )
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        root = tmp_path / "stack"
        root.mkdir()
        yield root


def test_a_run_against_a_terraform_target_loads_it_and_reports_its_cloudwatch_series(
    stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    watcher = LeakWatcher()
    with mock_aws():
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        for spec in METRICS:
            put_points(spec, [(now + dt.timedelta(minutes=i), 20.0 + i) for i in range(-1, 2)])
        watcher.start()
        try:
            code = main(
                [
                    "run", "--profile", "light_load", "--duration", "10", "--quiet",
                    "--target", f"terraform:{stack}", "--results", str(results),
                    "--threshold", "p95_listing_ms=off", "--threshold", "p99_download_ms=off",
                    "--allow-generator-bound",
                ]
            )  # fmt: skip
        finally:
            watcher.stop.set()
            watcher.join(5)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert watcher.scans > 10 and watcher.found == []
    (run_dir,) = results.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["requests"]["count"] > 0 and report["error_rate"] == 0.0
    run = report["run"]["target"]
    assert run["kind"] == "remote" and run["terraform_dir"] == str(stack)
    assert run["cloudwatch"] == DIMENSIONS.__dict__
    # The series moto holds for the run's minutes, fetched after the run.
    assert set(report["cloudwatch"]["series"]) == {spec.key for spec in METRICS}
    assert (run_dir / "chart-cloudwatch.png").is_file()
    assert "## Server side (CloudWatch)" in (run_dir / "report.md").read_text()
    # The password is in no file of the run and in nothing printed.
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in out + err


PLUGIN_TEST = """
def test_load(pipstorm_run):
    assert pipstorm_run("light_load", duration=5).passed
"""


def test_the_pytest_plugin_reads_the_same_target_and_refuses_a_remote_one(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    outputs = {
        "pypi_url": {"value": "https://192.0.2.10/simple/"},  # TEST-NET-1: never loopback
        "pypi_username": {"sensitive": True, "value": "stackuser"},
        "pypi_password": {"sensitive": True, "value": PASSWORD},
    }
    install_fake_terraform(tmp_path / "bin", tmp_path / "call.json", stdout=json.dumps(outputs))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "stack"
    root.mkdir()
    pytester.makepyfile(test_user=PLUGIN_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--pipstorm-target=terraform:{root}", timeout=120
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*refusing to send load to 192.0.2.10*--allow-remote-target*"])
    assert PASSWORD not in result.stdout.str() + result.stderr.str()
    assert json.loads((tmp_path / "call.json").read_text())["argv"][0] == f"-chdir={root}"

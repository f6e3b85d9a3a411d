"""``--target terraform:DIR`` at the CLI: parsed, read with a fake ``terraform``, refused when
remote without ``--allow-remote-target``, watched live with moto's CloudWatch."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from pipstorm.engine.cli.app import main
from pipstorm.engine.run.target.opening import TargetSetupError, TargetSpec, parse_target
from pipstorm.infra.aws.metrics import metric_spec
from tests.infra.aws.support import (
    DIMENSIONS,
    REGION,
    install_fake_terraform,
    isolate_aws,
    put_points,
)

PASSWORD = "tf-output-password-7f3a"  # noqa: S105 - a test value


@pytest.fixture(autouse=True)
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)
    for name in ("PYPI_URL", "PYPI_USERNAME", "PYPI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> Path:
    """A Terraform root whose fake ``terraform output -json`` names ``url`` and the stack."""
    outputs = {
        name: {"sensitive": False, "type": "string", "value": value}
        for name, value in {
            "pypi_url": url,
            "aws_region": REGION,
            **DIMENSIONS.__dict__,
        }.items()
    }
    outputs["pypi_username"] = {"sensitive": True, "type": "string", "value": "pypi"}
    outputs["pypi_password"] = {"sensitive": True, "type": "string", "value": PASSWORD}
    bin_dir = tmp_path / "bin"
    install_fake_terraform(bin_dir, tmp_path / "terraform-call.json", stdout=json.dumps(outputs))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "stack"
    root.mkdir()
    return root


def test_target_forms() -> None:
    assert parse_target(None) == TargetSpec()
    assert parse_target("embedded") == TargetSpec()
    assert parse_target("url:http://127.0.0.1:8080/simple/") == TargetSpec(
        index_url="http://127.0.0.1:8080/simple/"
    )
    assert parse_target(None, "http://x/simple/") == TargetSpec(index_url="http://x/simple/")
    assert parse_target("terraform:infra/terraform/pypiserver") == TargetSpec(
        terraform_dir=Path("infra/terraform/pypiserver")
    )
    for bad in ("terraform:", "s3:bucket", "nonsense"):
        with pytest.raises(TargetSetupError, match="terraform:DIR, url:URL or embedded"):
            parse_target(bad)
    with pytest.raises(TargetSetupError, match="give one of them"):
        parse_target("embedded", "http://127.0.0.1/simple/")


def test_a_remote_stack_needs_allow_remote_target_and_its_password_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = stack_dir(tmp_path, monkeypatch, "https://192.0.2.10/simple/")  # TEST-NET-1
    results = tmp_path / "results"
    code = main(
        [
            "run",
            "--profile",
            "light_load",
            "--target",
            f"terraform:{root}",
            "--results",
            str(results),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("ERROR: refusing to send load to 192.0.2.10")
    assert "pass --allow-remote-target" in err
    assert PASSWORD not in out + err
    assert not results.exists()  # refused before a results folder was made
    call = json.loads((tmp_path / "terraform-call.json").read_text())
    assert call["argv"] == [f"-chdir={root}", "output", "-json", "-no-color"]


def test_an_unreadable_stack_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--profile", "light_load", "--target", f"terraform:{tmp_path / 'no'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a directory" in err


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_watch_prints_the_stacks_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = stack_dir(tmp_path, monkeypatch, "https://192.0.2.10/simple/")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    put_points(metric_spec("ecs_memory"), [(now - dt.timedelta(minutes=2), 63.0)])
    code = main(["watch", "--target", f"terraform:{root}", "--ticks", "2", "--interval", "0.01"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "watching https://192.0.2.10/simple/ in us-west-2" in err
    memory = [line for line in out.splitlines() if line.strip().startswith("ecs_memory")]
    assert len(memory) == 2 and all("63.0%" in line for line in memory)
    assert PASSWORD not in out + err


def test_watch_needs_a_terraform_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "--target", "url:http://127.0.0.1:1/simple/"]) == 2
    assert "watch needs --target terraform:DIR" in capsys.readouterr().err


@pytest.mark.usefixtures("aws")
def test_ctrl_c_ends_a_watch_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real watch (pipstorm's own watch_stack, moto's CloudWatch), interrupted by a real
    # SIGINT once its first tick is out, while it waits for the next one (an hour away).
    root = stack_dir(tmp_path, monkeypatch, "https://192.0.2.10/simple/")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    put_points(metric_spec("ecs_memory"), [(now - dt.timedelta(minutes=2), 63.0)])
    seen: list[str] = []
    done = threading.Event()

    def interrupt_after_the_first_tick() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            out, err = capsys.readouterr()
            seen.append(out + err)
            if "ecs_memory" in "".join(seen):
                time.sleep(0.2)  # into the wait for the next tick
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    interrupter = threading.Thread(target=interrupt_after_the_first_tick, daemon=True)
    interrupter.start()
    try:
        code = main(["watch", "--target", f"terraform:{root}", "--interval", "3600"])
    finally:
        done.set()
        interrupter.join(10)
    out, err = capsys.readouterr()
    text = "".join(seen) + out + err
    assert code == 0
    assert "63.0%" in text  # the series was printed before the interrupt
    assert text.endswith("stopped\n")
    assert "Traceback" not in text

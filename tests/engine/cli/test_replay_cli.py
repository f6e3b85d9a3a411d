"""``pipstorm replay`` refusing bad input before any load: one ERROR line, exit 2, no traceback,
no results folder, and no credential a logged URL held."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.engine.cli import main
from tests.engine.run.replay.lines import APACHE_COMBINED, AWS_HTTPS, PIP_HTTPS
from tests.infra.aws.support import isolate_aws

SECRET = "s3cr3t"  # noqa: S105 - the fake secret the test makes sure is never shown
BROWSER = APACHE_COMBINED.replace("/apache_pb.gif", f"/simple/?token={SECRET}")
GARBAGE = f"torn line with https://ci:{SECRET}@pypi.example.com/simple/"


def refused(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[str, list[str]]:
    results = tmp_path / "results"
    code = main(["replay", *args, "--results", str(results), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and SECRET not in err
    lines = err.splitlines()
    assert lines[-1].startswith("ERROR: ") and not any(x.startswith("ERROR") for x in lines[:-1])
    assert not results.exists() or not any(results.iterdir())
    return lines[-1], lines[:-1]


def log(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "access.log"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_a_log_of_browsers_and_health_checks_is_nothing_to_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error, before = refused([log(tmp_path, BROWSER, AWS_HTTPS)], tmp_path, capsys)
    assert "none of the log's 2 requests makes a replayable client run" in error
    assert "--raw" in error and "Mozilla/4.08" in error
    assert not before


def test_unreadable_lines_are_counted_and_one_is_quoted_without_its_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error, before = refused([log(tmp_path, GARBAGE, "x", BROWSER)], tmp_path, capsys)
    assert "nothing" in error or "none of" in error
    (warning,) = before
    assert warning.startswith("pipstorm: WARNING: 2 of 3 log lines were unreadable")
    assert "torn line with https://***@pypi.example.com" in warning


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "0"], "--speed must be > 0"),
        (["--gap", "-1"], "--gap must be > 0"),
        (["--from", "yesterday"], "--from: 'yesterday' is not an ISO 8601 time"),
        (["--from", "2018-07-03T00:00:00", "--to", "2018-07-02"], "must be before --to"),
        (["--from", "2030-01-01T00:00:00Z"], "no request in the chosen window"),
        (["--index-url", f"http://u:{SECRET}@127.0.0.1:1/simple/"], "must not carry credentials"),
    ],
)
def test_bad_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    error, _ = refused([log(tmp_path, PIP_HTTPS), *args], tmp_path, capsys)
    assert message in error


def test_missing_sources_and_unreadable_s3_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    error, _ = refused([str(tmp_path / "none.log")], tmp_path, capsys)
    assert "no such file or folder" in error
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    error, _ = refused(["s3://incident-logs/alb/"], tmp_path, capsys)
    assert "no AWS credentials" in error


def test_a_log_played_faster_than_this_machine_can_start_runs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2,000 pip runs from as many hosts over 200 s of log, at x1000: all within 0.2 s
    lines = [
        PIP_HTTPS.replace("192.168.131.39:2817", f"10.{i // 250}.{i % 250}.1:2817").replace(
            "22:22:48.364000Z", f"22:{22 + i // 600:02d}:{(i % 600) / 10:04.1f}00000Z"
        )
        for i in range(2000)
    ]
    error, _ = refused([log(tmp_path, *lines), "--speed", "1000"], tmp_path, capsys)
    assert "this machine cannot play the plan: 2,000 runs at one tick" in error
    assert "--force" in error

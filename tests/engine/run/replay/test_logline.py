"""Parsing access-log lines: AWS's and Apache's documented examples, pip's JSON user agent in
each format's quoting, credentials in a logged URL, and lines that are neither format."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipstorm.engine.run.replay.logline import BadLine, parse_line
from pipstorm.engine.run.replay.read import LogSourceError, read_logs
from tests.engine.run.replay.lines import APACHE_COMBINED, AWS_HTTP, AWS_HTTPS

PIP_AGENT = 'pip/25.3 {"ci":null,"cpu":"x86_64","implementation":{"name":"CPython"}}'


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(("line", "latency_ms"), [(AWS_HTTP, 1.0), (AWS_HTTPS, 48.0)])
def test_aws_documented_alb_lines_use_the_request_creation_time(
    line: str, latency_ms: float
) -> None:
    request = parse_line(line)
    assert request is not None
    # request_creation_time, not `time` (when the response was sent, 12 s later here)
    assert request.time == at("2018-07-02T22:22:48.364000+00:00")
    assert (request.client, request.user_agent) == ("192.168.131.39", "curl/7.46.0")
    assert (request.method, request.path, request.status) == ("GET", "/", 200)
    assert request.latency_ms == pytest.approx(latency_ms)  # target_processing_time
    assert request.bytes_sent == int(line.split()[11])


def test_an_alb_line_from_before_request_creation_time_uses_time_less_processing() -> None:
    old = " ".join(AWS_HTTPS.split(" ")[:17])  # up to ssl_cipher: lines of older ALBs end early
    request = parse_line(old)
    assert request is not None
    assert request.time == pytest.approx(at("2018-07-02T22:23:00.186641+00:00") - 0.171)


def test_the_documented_combined_line_parses_without_latency() -> None:
    request = parse_line(APACHE_COMBINED)
    assert request is not None
    assert request.time == at("2000-10-10T13:55:36-07:00")
    assert request.client == "127.0.0.1"
    assert request.user_agent == "Mozilla/4.08 [en] (Win98; I ;Nav)"
    assert (request.method, request.path, request.status) == ("GET", "/apache_pb.gif", 200)
    assert (request.bytes_sent, request.latency_ms) == (2326, None)


@pytest.mark.parametrize(
    "quoted",
    [
        PIP_AGENT,  # gunicorn writes quotes as they are
        PIP_AGENT.replace('"', "\\x22"),  # nginx's default escaping
        PIP_AGENT.replace('"', '\\"'),  # ALB's and nginx escape=json
    ],
)
def test_pips_json_user_agent_survives_each_formats_quoting(quoted: str) -> None:
    line = (
        f'10.1.2.3 - - [06/Dec/2026:05:13:43 +0000] "GET /simple/requests/ HTTP/1.1" 200 812 '
        f'"-" "{quoted}" 0.250'
    )
    request = parse_line(line)
    assert request is not None
    assert request.user_agent == PIP_AGENT
    # $request_time: the arrival is the logged time less the request's time
    assert request.time == pytest.approx(
        datetime(2026, 12, 6, 5, 13, 43, tzinfo=UTC).timestamp() - 0.25
    )
    assert request.latency_ms == pytest.approx(250.0)
    alb = AWS_HTTPS.replace('"curl/7.46.0"', '"' + PIP_AGENT.replace('"', '\\"') + '"')
    parsed = parse_line(alb)
    assert parsed is not None and parsed.user_agent == PIP_AGENT


def test_credentials_and_queries_of_a_logged_url_are_not_kept() -> None:
    line = AWS_HTTPS.replace(
        "https://www.example.com:443/ ",
        "https://ci:hunter2@www.example.com:443/simple/my-pkg/?token=s3cr3t ",
    )
    request = parse_line(line)
    assert request is not None
    assert request.path == "/simple/my-pkg/"
    assert "hunter2" not in repr(request) and "s3cr3t" not in repr(request)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('10.0.0.1 - - [06/Dec/2026:05:13:43 +0000] "GET / HTTP/1.1 200 5 "-" "x', "not closed"),
        ("just some words in a line", "neither an ALB line nor combined"),
        ('1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 5 "-" "curl/8"', "time 'yesterday'"),
        (AWS_HTTP.replace('"GET http://www.example.com:80/ HTTP/1.1"', '"- - - "'), "request"),
    ],
)
def test_unreadable_lines_say_why(line: str, why: str) -> None:
    with pytest.raises(BadLine, match=why):
        parse_line(line)


def test_reading_counts_unreadable_lines_and_quotes_the_first_redacted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text(f"{AWS_HTTP}\n\n# comment\n{APACHE_COMBINED}\n", "utf-8")
    bad = "torn https://ci:hunter2@pypi.example.com/simple/ line"
    (logs / "b.log.gz").write_bytes(gzip.compress(f"{AWS_HTTPS}\n{bad}\nxx\n".encode()))
    read = read_logs([str(logs)])
    assert (read.files, read.lines, len(read.requests), read.unreadable) == (2, 7, 3, 2)
    warning = read.warning() or ""
    assert warning.startswith("2 of 7 log lines were unreadable") and "torn" in warning
    assert "hunter2" not in warning


def test_missing_sources_and_s3_without_a_reader_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(LogSourceError, match="no such file or folder"):
        read_logs([str(tmp_path / "nope.log")])
    with pytest.raises(LogSourceError, match="holds no files"):
        read_logs([str(tmp_path)])
    with pytest.raises(LogSourceError, match="S3"):
        read_logs(["s3://bucket/prefix"])
    (tmp_path / "cut.gz").write_bytes(gzip.compress(AWS_HTTP.encode() * 50)[:40])
    with pytest.raises(LogSourceError, match=r"cut\.gz"):
        read_logs([str(tmp_path / "cut.gz")])

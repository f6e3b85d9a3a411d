"""Bad input, systematically: every case is one ERROR line naming the problem, exit 2, no
traceback, and no results folder left behind. All of these are refused before any load."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.engine.cli import main
from pipstorm.engine.cli.app import _one_line

PROFILES = [
    ("duration_s = 10", "'clients' and 'duration_s' are required"),
    ("clients = -1\nduration_s = 10", "clients must be >= 1, got -1"),
    ("clients = 3\nduration_s = -5", "duration_s must be > 0"),
    ("clients = 3\nduration_s = inf", "duration_s must be > 0, got inf"),
    ("clients = 3\nduration_s = nan", "duration_s must be > 0, got nan"),
    ("clients = 3\nduration_s = 1e308", "duration_s must be at most 604800 (a week)"),
    ("clients = 3\nduration_s = 10\ntick_s = 0", "tick_s must be > 0"),
    ("clients = 3\nduration_s = 10\nbogus = 1", "unknown key 'bogus'"),
    ('clients = "3"\nduration_s = 10', "clients has the wrong type ('3')"),
    ("clients = true\nduration_s = 10", "clients has the wrong type (True)"),
    ("clients = 3\nduration_s = 10\nburst_every_s = 7", "must be a multiple of tick_s"),
    ("clients = 3\nduration_s = 10\nmix = {npm = 1}", "unknown client kind 'npm'"),
    ("clients = 3\nduration_s = 10\nmix = {pip = -1}", "share of 'pip' must be a number >= 0"),
    ('clients = 3\nduration_s = 10\n[[faults]]\nop = "nope"', "'op=nope' is not one of"),
    ('clients = 3\nduration_s = 10\nthresholds = {p95_listing_ms = "x"}', "must map names"),
    ("[[[", "is not valid TOML"),
    ("clients = 1000000\nduration_s = 1440", "this machine cannot play the plan"),
    (
        "clients = 3\nduration_s = 60\nburst_every_s = 10\nburst_multiplier = 100000000",
        "300,000,000 runs at one tick",
    ),
]
ARGUMENTS = [
    (["--index-url", "127.0.0.1:8080/simple/"], "must be an http(s) URL"),
    (["--index-url", "ftp://127.0.0.1/simple/"], "must be an http(s) URL"),
    (["--index-url", "http:///simple"], "must be an http(s) URL"),
    (["--index-url", "http://user:s3cr3t@127.0.0.1:1/simple/"], "must not carry credentials"),
    (["--index-url", "http://10.0.0.1/simple/"], "not a loopback address"),
    (["--fault", "op=listing,status=999"], "must be an HTTP status code 100-599"),
    (["--fault", "delay=-1s"], "is not a duration"),
    (["--fault", "p=2"], "must be a probability"),
    (["--fault", "nonsense"], "must look like key=value"),
    (["--fault", "op=listing"], "has no action"),
    (["--threshold", "p95_lisitng_ms=5"], "p95_lisitng_ms"),
    (["--threshold", "error_rate=lots"], "not a number"),
    (["--mix", "pip=x"], "is not KIND=SHARE"),
    (["--client", "pip", "--mix", "pip=1"], "not both"),
    (["--pip-version", "newest"], "must be a release number"),
    (["--duration", "10", "--time-scale", "2"], "not both"),
    (["--time-scale", "0"], "--time-scale must be > 0"),
    (["--shards", "0"], "--shards must be at least 1"),
    (["--cluster", "tcp://127.0.0.1:9"], "--cluster needs --shards N"),
    (["--shards", "2", "--max-clock-offset", "-1"], "--max-clock-offset must be >= 0"),
    (["--shards", "2", "--fault", "op=listing,status=503"], "not supported with --shards"),
    # Credentials in a URL: refused, and never quoted (refused() checks "s3cr3t" is not echoed).
    (["--index-url", "ftp://user:s3cr3t@127.0.0.1/simple/"], "must not carry credentials"),
    (["--target", "url:http://user:s3cr3t@127.0.0.1:1/"], "must not carry credentials"),
    (["--allow-origin", "http://user:s3cr3t@127.0.0.1:1"], "without credentials"),
    (["--shards", "1", "--cluster", "tcp://user:s3cr3t@127.0.0.1:9"], "without credentials"),
    (["--shards", "1", "--cluster", "127.0.0.1"], "must be tcp://HOST:PORT, got '127.0.0.1'"),
]


def refused(args: list[str], results: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["run", *args, "--results", str(results), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("ERROR: "), err
    assert "s3cr3t" not in err
    assert not results.exists() or not any(results.iterdir())  # nothing half-written
    return err


@pytest.mark.parametrize(("toml", "message"), PROFILES, ids=[m for _, m in PROFILES])
def test_a_bad_profile_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(toml + "\n", encoding="utf-8")
    assert message in refused(["--profile", str(profile)], tmp_path / "results", capsys)


@pytest.mark.parametrize(("args", "message"), ARGUMENTS, ids=[m for _, m in ARGUMENTS])
def test_a_bad_argument_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    full = ["--profile", "light_load", "--duration", "5", *args]
    if "--time-scale" in args:
        full = ["--profile", "light_load", *args]
    assert message in refused(full, tmp_path / "results", capsys)


def test_corpus_upload_refuses_credentials_in_its_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a-1.0.0-py3-none-any.whl").write_bytes(b"")
    for extra in (
        ["--index-url", "http://user:s3cr3t@127.0.0.1:1/simple/"],
        ["--index-url", "http://127.0.0.1:1/simple/", "--upload-url", "http://u:s3cr3t@h/"],
    ):
        code = main(["corpus", "upload", "--corpus", str(tmp_path / "c"), *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("ERROR: ") and err.count("\n") == 1, err
        assert "must not carry credentials" in err and "s3cr3t" not in err


def test_an_error_line_masks_url_credentials_whatever_raised_it() -> None:
    # The last line of defence: any message quoting a URL with user:pass is masked.
    exc = OSError("cannot reach https://me:s3cr3t@idx.example/simple/ (refused)")
    assert _one_line(exc) == "cannot reach https://***@idx.example/simple/ (refused)"


def test_worker_refuses_a_scheduler_address_with_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["worker", "tcp://user:s3cr3t@127.0.0.1:9"])  # was Dask's traceback quoting it
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("ERROR: ") and err.count("\n") == 1, err
    assert "without credentials" in err and "s3cr3t" not in err

"""The CLI's small commands and its error contract: one ERROR line and exit 2, no traceback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipstorm.engine.cli import main


def test_profiles_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in ("light_load", "production_incident", "heavy_load"):
        assert name in out
    assert "x25 every 60 s" in out


def test_corpus_build_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["corpus", "build", "--packages", "3", "--versions", "1.0.0,2.0.0", "--payload-kb", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "built 6 wheels" in capsys.readouterr().out

    def digests(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert len(digests(tmp_path / "a")) == 6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["corpus", "build", "--packages", "0", "--out", "x"], "packages"),
        (["report", "/nonexistent/run"], "not a pipstorm results folder"),
        (["run", "--profile", "nope"], "unknown profile 'nope'"),
        (["run", "--profile", "light_load", "--launch", "hot"], "--launch must be warm or exec"),
        (["retry-lab", "--launch", "hot"], "--launch must be warm or exec"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR: ")
    assert "\n" not in err
    assert message in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-such-option"]) == 2
    assert "No such option" in capsys.readouterr().err

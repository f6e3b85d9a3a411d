"""``pipstorm compare``: deltas against the first run, three formats, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipstorm.engine.cli import main
from pipstorm.engine.report.compare import compare_paths
from pipstorm.engine.report.write import write_reports
from tests.engine.synthetic_run import write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A baseline and a run of the same load 40 ms slower per request."""
    root = tmp_path_factory.mktemp("compare")
    fast = write_run(root / "fast", duration_s=120, host=False)
    slow = write_run(root / "slow", duration_s=120, host=False, slow_ms=40.0)
    write_reports(fast)
    write_reports(slow)
    return fast, slow


def test_json_has_every_run_and_a_delta_per_metric(runs: tuple[Path, Path]) -> None:
    fast, slow = runs
    data = json.loads(compare_paths([fast, slow / "report.json"], "json"))
    assert [r["name"] for r in data["runs"]] == ["A", "B"]
    assert [r["verdict"] for r in data["runs"]] == ["pass", "pass"]
    metrics = {m["key"]: m for m in data["metrics"]}
    p95 = metrics["p95_listing_ms"]
    assert p95["change"][0] == 0 and p95["change"][1] > 39
    assert p95["judgement"] == ["same", "worse"]
    assert metrics["requests"]["judgement"] == [None, None]  # no better or worse for a count
    assert metrics["requests"]["change"] == [0, 0]
    for key in ("error_rate", "error_5xx_count", "p99_download_ms", "lag_p95_s", "client_runs"):
        assert key in metrics


def test_table_and_markdown(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fast, slow = runs
    assert main(["compare", str(fast), str(slow), str(fast)]) == 0
    out = capsys.readouterr().out
    assert "A (reference)" in out and "B vs A" in out and "C vs A" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("p95 listing"))
    assert "worse" in line and line.rstrip().endswith("=")
    md = compare_paths([fast, slow], "md")
    assert "| metric" in md and "- **A**:" in md


def test_a_run_without_report_json_is_reported_in_memory(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "killed", duration_s=60, host=False, ended=False)
    out = compare_paths([run_dir, run_dir], "table")
    assert "pass (incomplete)" in out
    assert not (run_dir / "report.json").exists()  # comparing never writes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "{a}"], "at least two runs"),
        (["compare", "{a}", "{missing}"], "no such run folder or report.json"),
        (["compare", "{a}", "{a}", "--format", "xml"], "unknown --format 'xml'"),
        (["compare", "{a}", "{junk}"], "not a readable report.json"),
        (["compare", "{a}", "{empty}"], "not a pipstorm results folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    paths = {
        "a": str(runs[0]),
        "missing": str(tmp_path / "nope"),
        "junk": str(tmp_path / "junk.json"),
        "empty": str(tmp_path / "empty"),
    }
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR: ") and message in err and "\n" not in err

"""A run against an AWS stack: its CloudWatch series in report.json/md/html, charts and compare.

The series come from moto (in process), fetched by ``pipstorm report DIR --cloudwatch`` for a
synthetic production_incident whose run.json names the stack, as a real run's does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from pipstorm.engine.cli.app import main
from pipstorm.engine.report.compare import compare_paths
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.aws.metrics import METRICS, metric_spec
from tests.engine.synthetic_run import T0, write_run
from tests.infra.aws.support import DIMENSIONS, REGION, isolate_aws, put_points

RUN_S = 300.0


@pytest.fixture(autouse=True)
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


def aws_run(path: Path, **kwargs: float) -> Path:
    """A synthetic run whose run.json names the stack, as ``--target terraform:DIR`` records."""
    run_dir = write_run(path, duration_s=RUN_S, **kwargs)  # type: ignore[arg-type]
    meta = RunMeta.read(run_dir)
    meta.target = {
        "kind": "remote",
        "index_url": "https://pypiserver.example.com/",
        "terraform_dir": "/stack",
        "region": REGION,
        "cloudwatch": dataclasses.asdict(DIMENSIONS),
    }
    meta.write(run_dir)
    return run_dir


def put_run_series(memory_peak: float) -> None:
    """One datapoint a minute over the run for every series; ECS memory peaks mid-run."""
    start = dt.datetime.fromtimestamp(T0, dt.UTC).replace(second=0)
    for spec in METRICS:
        values = [10.0 + i for i in range(6)]
        if spec.key == "ecs_memory":
            values[3] = memory_peak
        put_points(spec, [(start + dt.timedelta(minutes=i), v) for i, v in enumerate(values)])


@pytest.mark.usefixtures("aws")
def test_report_cloudwatch_fetches_the_runs_window_and_shows_it_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = aws_run(tmp_path / "run")
    put_run_series(memory_peak=97.5)
    # A point of the same series an hour later is outside the run's window.
    put_points(metric_spec("ecs_memory"), [(dt.datetime.fromtimestamp(T0 + 3600, dt.UTC), 1.0)])
    assert main(["report", str(run_dir), "--cloudwatch"]) == 0
    assert (run_dir / "cloudwatch.jsonl").is_file()

    report = json.loads((run_dir / "report.json").read_text())
    cloudwatch = report["cloudwatch"]
    assert cloudwatch["region"] == REGION
    assert set(cloudwatch["series"]) == {spec.key for spec in METRICS}
    memory = cloudwatch["series"]["ecs_memory"]
    assert (memory["max"], memory["min"], memory["points"]) == (97.5, 10.0, 6)
    assert cloudwatch["missing"] == {}
    assert not any("CloudWatch" in note for note in report["notes"])

    markdown = (run_dir / "report.md").read_text()
    assert "## Server side (CloudWatch)" in markdown
    assert "| ecs_memory" in markdown and "97.5 %" in markdown
    # The chart comes right after the latency chart it explains.
    charts = [line for line in markdown.splitlines() if line.startswith("![")]
    names = [line.split("(")[-1].rstrip(")") for line in charts]
    assert names[names.index("chart-latency.png") + 1] == "chart-cloudwatch.png"
    assert (run_dir / "chart-cloudwatch.png").read_bytes().startswith(b"\x89PNG")
    html = (run_dir / "report.html").read_text()
    assert 'id="chart-cloudwatch"' in html and 'id="cloudwatch"' in html
    assert "ecs_memory" in capsys.readouterr().out  # the terminal summary's table


def test_without_credentials_the_report_says_which_series_are_missing_and_why(
    tmp_path: Path,
) -> None:
    run_dir = aws_run(tmp_path / "run")  # AWS_REGION unset: the stack's region from run.json
    assert main(["report", str(run_dir), "--cloudwatch"]) == 0  # never a failed report
    report = json.loads((run_dir / "report.json").read_text())
    assert report["cloudwatch"]["series"] == {}
    assert set(report["cloudwatch"]["missing"]) == {spec.key for spec in METRICS}
    (note,) = [n for n in report["notes"] if n.startswith("CloudWatch series missing")]
    assert note.startswith("CloudWatch series missing: ecs_cpu, ecs_memory, ")
    assert note.endswith(
        ": no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)."
    )
    assert note in (run_dir / "report.md").read_text()
    assert not (run_dir / "chart-cloudwatch.png").exists()


def test_without_any_region_the_reason_is_the_region(tmp_path: Path) -> None:
    run_dir = aws_run(tmp_path / "run")
    meta = RunMeta.read(run_dir)
    meta.target["region"] = None
    meta.write(run_dir)
    assert main(["report", str(run_dir), "--cloudwatch"]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    (note,) = [n for n in report["notes"] if n.startswith("CloudWatch series missing")]
    assert note.endswith(": no AWS region: set AWS_REGION.")


def test_report_cloudwatch_on_a_run_that_named_no_stack_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=60)
    assert main(["report", str(run_dir), "--cloudwatch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json names no AWS stack" in err
    assert not (run_dir / "cloudwatch.jsonl").exists()


@pytest.mark.usefixtures("aws")
def test_compare_shows_the_server_side_only_for_runs_that_have_it(tmp_path: Path) -> None:
    baseline = aws_run(tmp_path / "baseline", slow_ms=40.0)
    put_run_series(memory_peak=99.0)
    assert main(["report", str(baseline), "--cloudwatch"]) == 0
    optimized = aws_run(tmp_path / "optimized")
    assert main(["report", str(optimized), "--cloudwatch"]) == 0
    # Same window, same moto data: overwrite the optimized run's series with a lower peak.
    data = json.loads((optimized / "report.json").read_text())
    data["cloudwatch"]["series"]["ecs_memory"]["max"] = 41.0
    (optimized / "report.json").write_text(json.dumps(data))
    table = compare_paths([baseline, optimized], "table")
    memory = next(line for line in table.splitlines() if line.startswith("ECS memory max (%)"))
    assert memory.split()[4:] == ["99.0", "41.0", "-58.6", "%", "better"]
    local_a, local_b = (
        write_run(tmp_path / "a", duration_s=60),
        write_run(tmp_path / "b", duration_s=60),
    )
    assert "ECS memory" not in compare_paths([local_a, local_b], "table")

"""The generator-saturation rule on crafted ``host.jsonl`` / ``clients.jsonl`` files, and how the
report shows it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipstorm.engine.analysis.generator.saturation import (
    CPU_SUSTAINED_S,
    GeneratorCheck,
    check_generator,
    host_samples,
    warning_lines,
)
from pipstorm.engine.report.markdown import render_markdown
from pipstorm.engine.report.model import build_report
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.rundir.files import CLIENTS_FILE, RUN_FILE
from pipstorm.engine.rundir.host import load_host
from pipstorm.engine.rundir.records import ClientRecord, load_clients

T0 = 1_700_000_000.0


def write_host(path: Path, cpus: Sequence[float], *, gap_after: int | None = None) -> None:
    """One sample a second with these host CPU figures (a stall of 10 s after ``gap_after``)."""
    lines = []
    ts = T0
    for i, cpu in enumerate(cpus):
        ts += 1.0
        if gap_after is not None and i == gap_after + 1:
            ts += 10.0
        lines.append(
            json.dumps(
                {
                    "ts": ts,
                    "interval_s": 1.0,
                    "host_cpu_percent": cpu,
                    "host_cpu_per_core": [cpu, cpu],
                    "host_mem_percent": 40.0,
                    "load1": 1.5,
                    "proxy": {"cpu_percent": 3.0, "rss_mb": 30.0},
                    "target": None,
                    "clients": {"cpu_percent": 150.0, "rss_mb": 200.0, "processes": 4},
                }
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def client(run_id: str, lag_s: float) -> ClientRecord:
    return ClientRecord(
        run_id=run_id,
        client="pip",
        project="p",
        version="1.0.0",
        tick=0,
        burst=False,
        intended=T0,
        started=T0 + lag_s,
        launched=T0 + lag_s,
        ended=T0 + lag_s + 1,
        lag_s=lag_s,
        exit_code=0,
        outcome="ok",
    )


def check(
    tmp_path: Path, cpus: Sequence[float], lags: Sequence[float] = (0.01,), **kw: int
) -> GeneratorCheck:
    path = tmp_path / "host.jsonl"
    write_host(path, cpus, **kw)
    rows, skipped = load_host(path)
    samples = host_samples(rows)
    assert skipped == 0
    clients = [client(f"r{i}", lag) for i, lag in enumerate(lags)]
    return check_generator(samples, clients, local_target=True)


def test_an_idle_generator_is_not_flagged(tmp_path: Path) -> None:
    result = check(tmp_path, [20.0, 35.0, 95.0, 30.0, 30.0] * 5)  # busy 20 % of the time
    assert not result.saturated
    assert result.reasons == ()
    assert result.cpu_max == 95.0
    assert result.cpu_busy_longest_s == 1.0
    assert warning_lines(result) == []


def test_five_consecutive_busy_seconds_flag_it(tmp_path: Path) -> None:
    result = check(tmp_path, [10.0] * 20 + [95.0] * int(CPU_SUSTAINED_S) + [10.0] * 20)
    assert result.saturated
    assert result.reasons == ("generator host CPU above 90 % for 5 consecutive s",)
    assert any("latency percentiles" in text for text in result.inflated)
    assert any("local target" in text for text in result.inflated)
    assert result.to_dict()["saturated"] is True
    assert result.to_dict()["reason"] == result.reasons[0]


def test_four_busy_seconds_do_not(tmp_path: Path) -> None:
    assert not check(tmp_path, [10.0] * 20 + [95.0] * 4 + [10.0] * 20).saturated


def test_exactly_90_percent_is_not_above(tmp_path: Path) -> None:
    assert not check(tmp_path, [90.0] * 30).saturated


def test_a_stalled_sampler_breaks_the_streak(tmp_path: Path) -> None:
    # 3 busy seconds, 10 s unsampled, 3 busy seconds: not "5 consecutive"; but 6 busy seconds
    # of 20 sampled is 30 %: the share rule flags it.
    result = check(tmp_path, [95.0] * 3 + [95.0] * 3 + [10.0] * 14, gap_after=2)
    assert result.cpu_busy_longest_s == 3.0
    assert result.saturated
    assert "30 % of the run" in result.reasons[0]


def test_short_busy_spells_adding_up_to_a_quarter_flag_it(tmp_path: Path) -> None:
    spell = [95.0, 95.0, 10.0, 10.0, 10.0, 10.0]  # 2 busy seconds in 6: a third
    result = check(tmp_path, spell * 5)
    assert result.cpu_busy_longest_s == 2.0
    assert result.saturated
    assert "33 % of the run" in result.reasons[0]


def test_late_runs_flag_it_even_with_idle_cpu(tmp_path: Path) -> None:
    lags = [0.01] * 95 + [1.5] * 5  # p99 of 100 runs lands among the late ones
    result = check(tmp_path, [10.0] * 10, lags)
    assert result.saturated
    assert result.lag_p99_s is not None and result.lag_p99_s > 1.0
    assert result.reasons[0].startswith("client run lag p99 1.50 s")
    assert any("offered load" in text for text in result.inflated)


def test_no_samples_and_no_runs_is_not_saturated() -> None:
    result = check_generator([], [], local_target=False)
    assert not result.saturated
    assert result.samples == 0
    assert result.cpu_max is None
    assert result.lag_p99_s is None


def test_malformed_host_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "host.jsonl"
    write_host(path, [50.0, 60.0])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"ts": 1, "host_cpu_percent": "high"}\n[1, 2]\n{"ts": 170000')
    rows, skipped = load_host(path)
    samples = host_samples(rows)
    assert [s.host_cpu_percent for s in samples] == [50.0, 60.0]
    assert samples[0].clients_cpu_percent == 150.0
    assert skipped == 3


def make_run_dir(tmp_path: Path, cpus: Sequence[float] | None) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    meta = {
        "schema": 1,
        "profile": {"name": "crafted"},
        "started": T0,
        "ended": T0 + 60,
        "target": {"kind": "remote", "index_url": "http://127.0.0.1:1/simple/"},
        "thresholds": {},
    }
    (run_dir / RUN_FILE).write_text(json.dumps(meta), encoding="utf-8")
    (run_dir / CLIENTS_FILE).write_text(
        json.dumps(client("r0", 0.01).to_json()) + "\n", encoding="utf-8"
    )
    assert load_clients(run_dir / CLIENTS_FILE)[1] == 0
    if cpus is not None:
        write_host(run_dir / "host.jsonl", cpus)
    return run_dir


def test_the_report_warns_prominently(tmp_path: Path) -> None:
    report = build_report(make_run_dir(tmp_path, [99.0] * 10))
    generator = report.to_dict()["generator"]
    assert generator["saturated"] is True
    assert generator["cpu_busy_longest_s"] == 10.0
    assert "local target" not in " ".join(generator["may_be_inflated"])  # remote target
    md = render_markdown(report)
    head = md.split("## Thresholds")[0]  # above everything but the verdict
    assert "> **WARNING: the load generator was the bottleneck" in head
    assert "WARNING: the load generator was the bottleneck" in terminal_summary(report)


@pytest.mark.parametrize("cpus", [None, [10.0] * 10])
def test_a_run_without_saturation_has_no_warning(tmp_path: Path, cpus: list[float] | None) -> None:
    report = build_report(make_run_dir(tmp_path, cpus))
    generator = report.to_dict()["generator"]
    assert generator["saturated"] is False
    assert generator["samples"] == (0 if cpus is None else 10)
    assert "WARNING" not in render_markdown(report)
    assert "WARNING" not in terminal_summary(report)

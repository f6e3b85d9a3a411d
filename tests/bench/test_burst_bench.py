"""A whole run's bursts, as ``pipstorm run`` plays them: onset per burst, outcome, plan, generator.

Issue 20's figures, each a real ``pipstorm run`` in a subprocess (the CLI as a user runs it):

- ``x25``: ``production_incident --duration 70`` against the embedded target (pip; and poetry,
  ``--client poetry``): two bursts of 75 runs (t=0, t=60 s); goal onset p95 <= 0.25 s for pip,
  <= 1 s for poetry;
- ``x170``: ``incident_x170 --duration 70 --client pip`` against a static index of the default
  corpus on loopback (``static_index``: the standard library's http.server, so the index is not
  what is measured): two bursts of 510 runs; goal onset p95 <= 1 s, every run ok, no plan
  warning, the generator not the bottleneck.

Prints, per run: each burst's onset p50/p95/max and runs reached, the runs ok, the plan's
warnings and lead line, whether the report calls the generator the bottleneck and the measured
run-queue wait of the proxy and the local target it judged, and the load average before and
after (the machine may be shared: the figures are only as quiet as it is).
Asserts only that the run produced a report. ``-k burst`` picks this file; each case takes a
few minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bench import static_index

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def static_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = static_index.build(tmp_path_factory.mktemp("static-index"))
    # PIPSTORM_BENCH_INDEX_FIFO=N: the index at SCHED_FIFO priority N (below the proxy's), so
    # no ordinary task can delay its wake-ups: what is left of its wait is its own.
    fifo = os.environ.get("PIPSTORM_BENCH_INDEX_FIFO")
    with static_index.serving(root, fifo=int(fifo) if fifo else None) as url:
        yield url


@dataclass
class Figures:
    """What one run's report and run.json say about its bursts."""

    bursts: list[dict[str, Any]]
    clients: dict[str, Any]
    generator: dict[str, Any]
    warnings: list[str]
    lead: dict[str, Any]
    load: tuple[float, float]


def play(results: Path, *args: str) -> Figures:
    """``pipstorm run ARGS --results RESULTS``; the figures of its report."""
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, "-m", "pipstorm", "run", *args, "--results", str(results), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    load_after = os.getloadavg()[0]
    reports = sorted(results.glob("*/report.json"))
    assert reports, proc.stderr[-2000:]
    report = json.loads(reports[-1].read_text(encoding="utf-8"))
    run = json.loads((reports[-1].parent / "run.json").read_text(encoding="utf-8"))
    return Figures(
        bursts=report["onset"]["bursts"],
        clients=report["clients"]["all"],
        generator=report["generator"],
        warnings=run.get("warnings") or [],
        lead=run.get("launch") or {},
        load=(load_before, load_after),
    )


def show(label: str, figures: Figures, goal_s: float) -> None:
    print(f"\n{label}: load average {figures.load[0]:.1f} -> {figures.load[1]:.1f}")
    for burst in figures.bursts:
        onset = burst["onset_s"] or {}
        print(
            f"  burst at {burst['offset_s']:5.0f} s: {burst['reached']}/{burst['runs']} reached,"
            f" onset p50 {onset.get('p50', 0):.2f} s p95 {onset.get('p95', 0):.2f} s"
            f" max {onset.get('max', 0):.2f} s (goal p95 <= {goal_s:g} s)"
        )
    print(f"  client runs: {json.dumps(figures.clients)[:300]}")
    generator = figures.generator
    print(f"  generator the bottleneck: {generator['saturated']} {generator.get('reasons')}")
    print(
        f"  host CPU rule applied: {generator.get('cpu_rule_applied')};"
        f" notes: {generator.get('notes')}"
    )
    wait = generator.get("cpu_wait") or {}
    for name, group in (wait.get("groups") or {}).items():
        print(
            f"  {name} run-queue wait: % of each second p95 {group['wait_percent']['p95']}"
            f" max {group['wait_percent']['max']}, above the limit for"
            f" {group['waited_longest_s']} consecutive s, coverage {group['coverage']},"
            f" measured {group['measured']} ({group['not_measured_because']});"
            f" waited {group.get('waited_all_s')} s, counted {group['waited_s']} s,"
            f" ran {group['ran_s']} s"
        )
    lead = figures.lead
    print(
        f"  plan warnings: {figures.warnings}; prepared {lead.get('ahead_s')} s ahead"
        f" ({lead.get('prepare_s')} s to prepare), costs {lead.get('costs')}"
    )


@pytest.mark.parametrize("client", ["pip", "poetry"])
def test_x25_onset_per_burst(tmp_path: Path, client: str) -> None:
    figures = play(
        tmp_path, "--profile", "production_incident", "--duration", "70", "--client", client
    )
    show(
        f"x25 production_incident, {client}, embedded target",
        figures,
        0.25 if client == "pip" else 1.0,
    )


def test_x170_onset_per_burst(tmp_path: Path, static_url: str) -> None:
    figures = play(
        tmp_path,
        "--profile",
        "incident_x170",
        "--duration",
        "70",
        "--client",
        "pip",
        "--index-url",
        static_url,
    )
    show("x170 incident_x170, pip, static index", figures, 1.0)
